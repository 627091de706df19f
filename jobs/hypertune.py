"""Ray job: tune every component with Optuna on Ray Tune, all in parallel.

    ray job submit --working-dir . -- python jobs/hypertune.py CONFIG \
        [--components a,b] [--trials N] [--resume]

The same work as ``raycat tune``: each component's trials spread over the
cluster, the best of each is refitted and evaluated, and its hyperparameters
are saved as JSON next to its model.  The last stdout line is a JSON summary.
Exits 1 when a component's search or refit failed.
"""

from __future__ import annotations

import sys
from typing import Any

from _common import base_parser, components_arg, run_job


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "-c", "--components", help="comma-separated component names (default: all)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="finish an interrupted search"
    )
    parser.add_argument(
        "--trials",
        type=int,
        help="trials per component (default: the config's tuning.trials)",
    )
    args = parser.parse_args(argv)
    if args.trials is not None and args.trials < 1:
        parser.error(f"--trials must be at least 1, got {args.trials}")

    def body(config: Any) -> tuple[dict[str, Any], bool]:
        from raycat.tuning.runner import run_tune, summary_rows

        if args.trials is not None:
            config.tuning.trials = args.trials
        summary = run_tune(config, components_arg(args.components), resume=args.resume)
        rows = summary_rows(summary)
        result = {
            "home": summary["home"],
            "metrics": f"{summary['home']}/metrics/tune.json",
            "tune_wall_s": summary["wall_s"],
            "components": rows,
        }
        return result, not any("error" in r for r in rows)

    return run_job("tune", args, body)


if __name__ == "__main__":
    sys.exit(main())
