"""Ray job: one active-learning iteration.

    ray job submit --working-dir . -- python jobs/retrain.py CONFIG \
        [--no-update] [--components a,b]

The same work as ``raycat retrain``: retrain on every label gathered so far,
score the pool and queue the next labels for the labelers (``--no-update``
retrains and reports without replacing the current model or the queue).  The
last stdout line is a JSON summary.
"""

from __future__ import annotations

import sys
from typing import Any

from _common import base_parser, components_arg, run_job


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--no-update",
        action="store_true",
        help="do not replace the current model or the labeling queue",
    )
    parser.add_argument(
        "-c", "--components", help="comma-separated component names (default: all)"
    )
    args = parser.parse_args(argv)

    def body(config: Any) -> tuple[dict[str, Any], bool]:
        try:
            from raycat.pipelines.retrain import run_retrain
        except ImportError as err:
            raise NotImplementedError(
                "this raycat has no raycat.pipelines.retrain.run_retrain yet; "
                "submit the job from a checkout that has the retrain pipeline"
            ) from err

        summary = run_retrain(
            config,
            no_update=args.no_update,
            components=components_arg(args.components),
        )
        summary = dict(summary) if isinstance(summary, dict) else {"result": summary}
        return summary, bool(summary.get("ok", True))

    return run_job("retrain", args, body)


if __name__ == "__main__":
    sys.exit(main())
