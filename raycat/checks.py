"""``raycat catalog check``: everything that can be found wrong before a run."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from raycat.config import PipelineConfig
from raycat.errors import RaycatError
from raycat.images import check_images
from raycat.labels import Source
from raycat.labels.store import open_label_store
from raycat.rules import apply_rules
from raycat.run import load_run

logger = logging.getLogger(__name__)

# Ids listed in the report per kind of problem; the counts are always complete.
MAX_LISTED = 20


def check_catalog(config: PipelineConfig, *, image_workers: int = 8) -> dict:
    """Validate the config's catalog, taxonomy, ground truth and rules.

    Returns a JSON-ready report.  Problems that stop a run raise
    :class:`~raycat.errors.RaycatError` from the loaders; everything else is
    listed under ``problems`` with a level (``error`` or ``warning``).
    """
    run = load_run(config)
    products = run.catalog.products
    problems: list[dict] = [
        {"level": "warning", "message": m} for m in run.catalog.problems
    ]

    logger.info("checking %d images", len(products))
    images = check_images(
        products["product_id"].tolist(),
        products["image"].tolist(),
        workers=image_workers,
    )
    if images.missing:
        problems.append(
            {
                "level": "warning",
                "message": f"{len(images.missing)} products have no image file; "
                "image models get a blank input and a no-image flag for them",
                "products": images.missing[:MAX_LISTED],
            }
        )
    if images.unreadable:
        problems.append(
            {
                "level": "warning",
                "message": f"{len(images.unreadable)} images cannot be decoded",
                "products": images.unreadable[:MAX_LISTED],
            }
        )

    no_path = products["category_path"].isna() if "category_path" in products else None
    if no_path is not None and config.dataset.taxonomy.source == "path_column":
        missing = products.loc[no_path, "product_id"].tolist()
        if missing:
            problems.append(
                {
                    "level": "warning",
                    "message": f"{len(missing)} products have no category path",
                    "products": missing[:MAX_LISTED],
                }
            )

    tax = run.taxonomy
    gt = run.ground_truth
    n = len(products)
    coverage: dict[str, dict] = {
        Source.GROUND_TRUTH.value: {
            "products": len(gt.labels),
            "share": round(len(gt.labels) / n, 4) if n else 0.0,
            "test": len(gt.test_ids),
            "pool": len(gt.pool_ids),
        }
    }
    if run.rules:
        matches = apply_rules(run.rules, products)
        labeled = matches["product_id"].nunique()
        coverage[Source.RULE.value] = {
            "products": int(labeled),
            "share": round(labeled / n, 4) if n else 0.0,
            "rules": len(run.rules),
            "categories_with_rules": len({r.category for r in run.rules}),
        }
    else:
        problems.append(
            {"level": "warning", "message": "no rules file: no rule labels to train on"}
        )
    if not gt.labels:
        problems.append(
            {
                "level": "warning",
                "message": "no ground truth: no test set, so nothing can be evaluated",
            }
        )

    store_path = Path(config.home) / "labels.sqlite"
    if store_path.exists():
        try:
            with open_label_store(config.home, tax) as store:
                for source, c in store.counts().items():
                    if source in (Source.HUMAN.value, Source.ORACLE.value):
                        coverage[source] = {
                            "products": c["products"],
                            "share": round(c["products"] / n, 4) if n else 0.0,
                            "labels": c["events"],
                        }
        except RaycatError as err:
            problems.append({"level": "error", "message": str(err)})

    support = Counter(c for cats in gt.closed(tax).values() for c in cats)
    small = [c for c in tax.ids if support[c] == 1]
    if small:
        problems.append(
            {
                "level": "warning",
                "message": f"{len(small)} categories have a single ground-truth "
                "product; they cannot be both trained on and tested",
                "categories": small[:MAX_LISTED],
            }
        )

    return {
        "config": config.source_path,
        "catalog": run.catalog.source,
        "products": n,
        "images": {
            "present": images.present,
            "missing": len(images.missing),
            "unreadable": len(images.unreadable),
        },
        "taxonomy": {
            "categories": len(tax),
            "top_level": len(tax.roots),
            "per_level": {str(k): v for k, v in tax.level_sizes().items()},
            "leaves": len(tax.leaves),
            "max_depth": tax.max_depth,
        },
        "label_coverage": coverage,
        "problems": problems,
        "ok": not any(p["level"] == "error" for p in problems),
    }
