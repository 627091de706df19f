"""quickstart: the whole pipeline on embedded defaults, or on a given config.

Without a config it generates a synthetic catalog first.  Then, each step the
same function a user runs on its own: catalog check, rules report,
train-pred, a short hypertune, ensembles, simulated active-learning
iterations, and the HTML report.  Each step logs as it starts and ends.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from raycat.config import load_config

logger = logging.getLogger(__name__)

# A few thousand products: enough for every component to learn something, small
# enough for the whole quickstart to finish in minutes on 2 cores.
DEFAULT_PRODUCTS = 2000
# Trials per component in the quickstart's short hypertune.
QUICK_TRIALS = 2
# Labels the oracle answers per simulated iteration.
QUICK_LABELS = 200

STEPS = (
    "sample data",
    "catalog check",
    "rules report",
    "train-pred",
    "hypertune",
    "ensembles",
    "active learning (2 simulated iterations)",
    "report",
)


def _step(i: int) -> None:
    logger.info("step %d/%d: %s", i + 1, len(STEPS), STEPS[i])


def run_quickstart(
    config_path: str | Path | None = None,
    *,
    out_dir: str | Path = "runs/quickstart",
    products: int = DEFAULT_PRODUCTS,
    seed: int = 0,
) -> dict[str, Any]:
    from raycat.checks import check_catalog
    from raycat.pipelines.ensemble import headline as ensemble_headline
    from raycat.pipelines.ensemble import run_ensemble
    from raycat.pipelines.simulate import _answer_page
    from raycat.pipelines.train_pred import headline, run_train_pred
    from raycat.report import write_report
    from raycat.rules import rules_report
    from raycat.run import load_run
    from raycat.tuning.runner import run_tune, summary_rows

    started = time.time()
    result: dict[str, Any] = {}
    _step(0)
    if config_path is None:
        from raycat.demo import generate_catalog

        summary = generate_catalog(
            Path(out_dir) / "data", products, seed=seed, overwrite=True
        )
        config_path = summary.config_path
        result["demo_data"] = {
            "config": str(config_path),
            "products": summary.n_products,
            "products_per_s": round(summary.products_per_s, 1),
        }
    else:
        logger.info("using the config %s", config_path)
    config = load_config(config_path)

    _step(1)
    check = check_catalog(config)
    result["catalog_check"] = {
        k: check[k] for k in ("products", "images", "taxonomy", "label_coverage")
    }
    result["catalog_check"]["problems"] = [p["message"] for p in check["problems"]]

    _step(2)
    run = load_run(config)
    report = rules_report(
        run.rules,
        run.catalog.products,
        run.taxonomy,
        run.ground_truth.closed(run.taxonomy) or None,
    )
    result["rules"] = report.get("totals", {})

    _step(3)
    result["train_pred"] = headline(run_train_pred(config))

    _step(4)
    config.tuning.trials = QUICK_TRIALS
    result["tune"] = summary_rows(run_tune(config))

    _step(5)
    ensemble = run_ensemble(config)
    result["ensemble"] = {
        "chosen": ensemble["selection"]["chosen"],
        "models": ensemble_headline(ensemble),
    }

    _step(6)
    from raycat.pipelines.retrain import run_retrain

    config.active_learning.labels_per_iteration = QUICK_LABELS
    iterations = []
    for it in range(3):
        if it > 0:
            _answer_page(config, it - 1, noise=0.0, seed=seed)
        summary = run_retrain(config)
        iterations.append(
            {
                "iteration": summary["iteration"],
                "model": summary["current"]["model"],
                "model_R": summary["model_R_vs_A"]["model_R"]["test"],
                "model_A": summary["model_R_vs_A"]["model_A"]["test"],
                "page": summary["page"]["items"],
            }
        )
    result["active_learning"] = iterations

    _step(7)
    result["report"] = str(write_report(config.home))
    result["home"] = config.home
    result["serve"] = f"raycat serve {config_path}"
    result["wall_s"] = round(time.time() - started, 1)
    return result
