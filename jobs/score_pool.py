"""Ray job: batch-score the unlabeled pool with Ray Data.

    ray job submit --working-dir . -- python jobs/score_pool.py CONFIG \
        [--model NAME] [--out DIR] [--gpus-per-actor 1]

The same work as ``raycat score``: the current model's probabilities, the text
and image components' probabilities, entropy and image/text disagreement, as
Parquet.  The last stdout line is a JSON summary.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from _common import base_parser, run_job


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        help="a model name under models/ or a folder (default: the current model)",
    )
    parser.add_argument(
        "--out", type=Path, help="output folder (default: under the run's home)"
    )
    parser.add_argument(
        "--gpus-per-actor",
        type=float,
        default=0.0,
        help="GPUs per scoring actor (default 0: score on CPUs)",
    )
    parser.add_argument(
        "--block-mib",
        type=int,
        default=16,
        help="Ray Data block size in MiB (default 16); memory follows it",
    )
    args = parser.parse_args(argv)
    if args.gpus_per_actor < 0:
        parser.error(f"--gpus-per-actor must be >= 0, got {args.gpus_per_actor}")
    if args.block_mib < 1:
        parser.error(f"--block-mib must be >= 1, got {args.block_mib}")

    def body(config: Any) -> tuple[dict[str, Any], bool]:
        from raycat.pipelines.score import score_pool

        summary = score_pool(
            config,
            model=args.model,
            out_dir=args.out,
            gpus_per_actor=args.gpus_per_actor,
            block_mib=args.block_mib,
        )
        return dict(summary), True

    return run_job("score", args, body)


if __name__ == "__main__":
    sys.exit(main())
