"""quickstart: the whole pipeline on embedded defaults, or on a given config.

Without a config it generates a synthetic catalog first.  Each stage logs
what it does; the stages are the same commands a user runs one by one.
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
DEFAULT_PRODUCTS = 3000


def run_quickstart(
    config_path: str | Path | None = None,
    *,
    out_dir: str | Path = "runs/quickstart",
    products: int = DEFAULT_PRODUCTS,
    seed: int = 0,
) -> dict[str, Any]:
    from raycat.checks import check_catalog
    from raycat.pipelines.train_pred import headline, run_train_pred
    from raycat.rules import rules_report
    from raycat.run import load_run

    started = time.time()
    result: dict[str, Any] = {}
    if config_path is None:
        from raycat.demo import generate_catalog

        logger.info("step 1/4: generating a synthetic catalog of %d products", products)
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
        logger.info("step 1/4: using the config %s", config_path)
    config = load_config(config_path)

    logger.info("step 2/4: checking the catalog")
    check = check_catalog(config)
    result["catalog_check"] = {
        k: check[k] for k in ("products", "images", "taxonomy", "label_coverage")
    }
    result["catalog_check"]["problems"] = [p["message"] for p in check["problems"]]

    logger.info("step 3/4: measuring the old system's rules")
    run = load_run(config)
    report = rules_report(
        run.rules,
        run.catalog.products,
        run.taxonomy,
        run.ground_truth.closed(run.taxonomy) or None,
    )
    result["rules"] = report.get("totals", {})

    logger.info("step 4/4: training and evaluating every component (train-pred)")
    summary = run_train_pred(config)
    result["train_pred"] = headline(summary)
    result["home"] = summary["home"]
    result["wall_s"] = round(time.time() - started, 1)
    return result
