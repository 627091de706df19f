"""Ray job: train every configured component once and evaluate it.

    ray job submit --working-dir . -- python jobs/train_pred.py CONFIG \
        [--components random,tfidf_linear]

The same work as ``raycat train-pred``; the last stdout line is a JSON summary
(test micro / macro / hierarchical F1 per component).  Exits 1 when a
component failed.
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
    args = parser.parse_args(argv)

    def body(config: Any) -> tuple[dict[str, Any], bool]:
        from raycat.pipelines.train_pred import headline, run_train_pred

        summary = run_train_pred(config, components_arg(args.components))
        rows = headline(summary)
        result = {
            "home": summary["home"],
            "metrics": f"{summary['home']}/metrics/train-pred.json",
            "n_test": summary["n_test"],
            "components": rows,
        }
        return result, not any("error" in r for r in rows)

    return run_job("train-pred", args, body)


if __name__ == "__main__":
    sys.exit(main())
