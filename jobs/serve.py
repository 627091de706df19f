"""Ray job: deploy the online scoring app (Ray Serve) on the cluster.

    ray job submit --working-dir . -- python jobs/serve.py CONFIG [--block]

Deploys the app of ``raycat serve`` (scores, the labeling queue and page, a
Label Studio ML backend) and prints a JSON summary.  On a cluster the app keeps
running after the job ends (Serve's controller outlives the job) until ``serve
shutdown``; ``--block`` keeps the job alive with it instead.  Outside a cluster
the script always blocks, since its local Ray instance ends with it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from _common import base_parser, run_job


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, help="HTTP port (default: serving.port)")
    parser.add_argument("--host", help="HTTP host (default: serving.host)")
    parser.add_argument(
        "--block", action="store_true", help="keep the job running with the app"
    )
    args = parser.parse_args(argv)
    if args.port is not None and not 0 < args.port < 65536:
        parser.error(f"--port must be between 1 and 65535, got {args.port}")
    block = args.block or not os.environ.get("RAY_ADDRESS")

    def body(config: Any) -> tuple[dict[str, Any], bool]:
        from raycat.serving.app import start

        if args.port is not None:
            config.serving.port = args.port
        if args.host is not None:
            config.serving.host = args.host
        start(config)
        serving = config.serving
        summary = {
            "url": f"http://{serving.host}:{serving.port}{serving.route_prefix}",
            "blocking": block,
        }
        return summary, True

    status = run_job("serve", args, body)
    if status == 0 and block:
        from raycat.serving.app import block_until_interrupted

        block_until_interrupted()
    return status


if __name__ == "__main__":
    sys.exit(main())
