"""What every Ray job entry point shares: logging, connecting, the summary.

A job is submitted with ``ray job submit --working-dir . -- python jobs/x.py``;
Ray unpacks the working dir on the cluster, sets ``RAY_ADDRESS`` and runs the
command there.  The entry point connects to that cluster, calls one library
function, and ends with exactly one line of JSON on stdout (logs go to stderr),
so ``ray job logs ID | tail -n 1`` is the summary.

Exit status: 0 on success, 1 when the pipeline ran but something in it failed
(a component, a trial), 2 on a raycat error (bad config, missing data: the
message says what to fix), 3 on any other exception (with its traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The working dir that Ray ships is the repository root; put it first on the
# path so that the job runs the raycat it was submitted with, not an older copy
# installed on the nodes.
REPO_ROOT = Path(__file__).resolve().parents[1]
if (REPO_ROOT / "raycat").is_dir() and str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

logger = logging.getLogger("raycat.jobs")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_RAYCAT_ERROR = 2
EXIT_CRASHED = 3


def base_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the pipeline config as its first argument."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "config", type=Path, help="pipeline config (YAML), relative to the job's cwd"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs")
    return parser


def components_arg(value: str | None) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]``; nothing -> every configured component."""
    if not value:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    return names or None


def setup_logging(verbose: bool = False) -> None:
    """Plain records on stderr: ``ray job logs`` shows them next to stdout."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("ray", "urllib3", "filelock", "elastic_transport"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def submission_id() -> str | None:
    """The id that ``ray job submit`` gave this job (None outside a job).

    Ray passes it to the entrypoint in the job config's metadata.
    """
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not raw:
        return None
    try:
        return json.loads(raw).get("metadata", {}).get("job_submission_id")
    except (ValueError, AttributeError):
        return None


def emit(summary: dict[str, Any]) -> None:
    """The job's summary: one JSON document on one line, the last on stdout."""
    sys.stdout.flush()
    sys.stderr.flush()
    sys.stdout.write(json.dumps(summary, default=str) + "\n")
    sys.stdout.flush()


def run_job(
    job: str,
    args: argparse.Namespace,
    body: Callable[[Any], tuple[dict[str, Any], bool]],
) -> int:
    """Load the config, connect to Ray, run ``body(config)`` and report.

    ``body`` returns the summary and whether everything in it succeeded.
    Returns the exit status (see the module docstring).
    """
    setup_logging(getattr(args, "verbose", False))
    started = time.time()
    base = {
        "job": job,
        "config": str(args.config),
        "ray_address": os.environ.get("RAY_ADDRESS"),
        "submission_id": submission_id(),
    }

    def fail(err: BaseException, status: int) -> int:
        emit(
            base
            | {
                "ok": False,
                "error": f"{type(err).__name__}: {err}",
                "wall_s": round(time.time() - started, 1),
            }
        )
        return status

    try:
        import raycat.config
        from raycat.config import load_config
        from raycat.errors import RaycatError
        from raycat.ray_runtime import init_ray
    except ImportError as err:
        logger.error("%s: cannot import raycat (%s); install it on the nodes", job, err)
        return fail(err, EXIT_CRASHED)

    logger.info("%s: raycat from %s", job, Path(str(raycat.config.__file__)).parent)
    try:
        config = load_config(args.config)
        # Inside `ray job submit`, RAY_ADDRESS names the cluster; outside one,
        # this starts a local instance, so the script also runs on a laptop.
        init_ray()
        summary, ok = body(config)
    except RaycatError as err:
        logger.error("%s failed: %s", job, err)
        return fail(err, EXIT_RAYCAT_ERROR)
    except Exception as err:
        logger.error("%s crashed:\n%s", job, traceback.format_exc())
        return fail(err, EXIT_CRASHED)

    emit(base | {"ok": ok, "wall_s": round(time.time() - started, 1)} | summary)
    if not ok:
        logger.error("%s finished with failures; see the summary", job)
    return EXIT_OK if ok else EXIT_FAILED
