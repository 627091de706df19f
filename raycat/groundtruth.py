"""Ground-truth labels and the held-out test split.

Ground truth comes from the catalog's category-path column (a catalog whose
categories were assigned by hand) or from a labels table with one
(product id, category) row per label.  A seeded share of the products that have
ground truth, stratified by top-level category, becomes the test set; every
other product is the pool that rules and labelers label.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd

from raycat.catalog import Catalog, _format_of, clean_path, parse_path, read_table
from raycat.config import PipelineConfig
from raycat.errors import CatalogError, ConfigError
from raycat.taxonomy import Taxonomy

logger = logging.getLogger(__name__)


@dataclass
class GroundTruth:
    """Ground-truth categories per product (as given, not closed)."""

    labels: dict[str, list[str]]
    test_ids: list[str]
    pool_ids: list[str]

    def closed(self, taxonomy: Taxonomy) -> dict[str, set[str]]:
        """Each product's ground truth with every ancestor added."""
        return {pid: taxonomy.closure(cats) for pid, cats in self.labels.items()}


def load_ground_truth(
    config: PipelineConfig, catalog: Catalog, taxonomy: Taxonomy
) -> dict[str, list[str]]:
    gt = config.dataset.ground_truth
    products = catalog.products
    if gt.source == "none":
        return {}
    if gt.source == "path_column":
        if gt.column == config.dataset.taxonomy.column:
            paths = products["category_path"]
        else:
            if gt.column not in _raw_columns(config):
                raise CatalogError(
                    f"dataset.ground_truth.column names column {gt.column!r}, which "
                    f"the catalog {catalog.source!r} does not have"
                )
            raw = read_table(config.dataset.catalog.path, config.dataset.catalog.format)
            tax = config.dataset.taxonomy
            paths = [
                clean_path(parse_path(v, tax.separator), t, tax)
                for v, t in zip(raw[gt.column], products["title"], strict=True)
            ]
        out: dict[str, list[str]] = {}
        for pid, path in zip(products["product_id"], paths, strict=True):
            if path:
                cid = taxonomy.id_for_path(path)
                if cid is not None:
                    out[pid] = [cid]
        return out

    table = read_table(gt.table, _format_of(gt.table), what="ground-truth")
    for setting, col in (
        ("product_column", gt.product_column),
        ("category_column", gt.category_column),
    ):
        if col not in table.columns:
            raise CatalogError(
                f"dataset.ground_truth.{setting} names column {col!r}, which "
                f"{gt.table!r} does not have; its columns are {list(table.columns)}"
            )
    known = set(products["product_id"])
    out = defaultdict(list)
    unknown_products = 0
    for row, (pid, ref) in enumerate(
        zip(
            table[gt.product_column].astype(str), table[gt.category_column], strict=True
        )
    ):
        if pid not in known:
            unknown_products += 1
            continue
        cid = taxonomy.resolve(str(ref), where=f"{gt.table}, row {row}")
        out[pid].append(cid)
    if unknown_products:
        logger.warning(
            "skipped %d ground-truth rows whose product id is not in the catalog",
            unknown_products,
        )
    return dict(out)


def _raw_columns(config: PipelineConfig) -> list[str]:
    cat = config.dataset.catalog
    return list(read_table(cat.path, cat.format or "parquet").columns)


def split_test(
    labels: dict[str, list[str]],
    all_ids: list[str],
    taxonomy: Taxonomy,
    *,
    test_fraction: float | None,
    test_size: int | None,
    seed: int,
) -> tuple[list[str], list[str]]:
    """Pick the test set among products with ground truth, stratified by
    top-level category; return ``(test_ids, pool_ids)``, both sorted."""
    strata: dict[str, list[str]] = defaultdict(list)
    for pid in sorted(labels):
        strata[taxonomy.top_level(sorted(labels[pid])[0])].append(pid)
    n_gt = sum(len(v) for v in strata.values())
    if test_size is not None and test_size > n_gt:
        raise ConfigError(
            f"dataset.ground_truth.test_size is {test_size}, but only {n_gt} products "
            "have ground truth; lower it or use test_fraction"
        )
    target = test_size if test_size is not None else round((test_fraction or 0) * n_gt)

    # Largest-remainder allocation keeps the total exact and each stratum's share
    # proportional to its size.
    keys = sorted(strata)
    exact = np.array([len(strata[k]) * target / max(n_gt, 1) for k in keys])
    take = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - take), kind="stable")[: target - int(take.sum())]:
        take[i] += 1

    rng = np.random.default_rng(seed)
    test: list[str] = []
    for k, n in zip(keys, take, strict=True):
        members = strata[k]
        test.extend(members[i] for i in rng.permutation(len(members))[:n])
    test_set = set(test)
    pool = [pid for pid in all_ids if pid not in test_set]
    return sorted(test), sorted(pool)


def ground_truth_for(
    config: PipelineConfig, catalog: Catalog, taxonomy: Taxonomy
) -> GroundTruth:
    labels = load_ground_truth(config, catalog, taxonomy)
    gt = config.dataset.ground_truth
    ids = catalog.products["product_id"].tolist()
    if not labels:
        return GroundTruth({}, [], sorted(ids))
    test, pool = split_test(
        labels,
        ids,
        taxonomy,
        test_fraction=gt.test_fraction,
        test_size=gt.test_size,
        seed=gt.seed,
    )
    logger.info(
        "ground truth for %d products; %d in the test set, %d in the pool",
        len(labels),
        len(test),
        len(pool),
    )
    return GroundTruth(labels, test, pool)


def stratum_counts(ids: list[str], gt: GroundTruth, taxonomy: Taxonomy) -> pd.Series:
    """How many of ``ids`` fall in each top-level category."""
    tops = [taxonomy.top_level(sorted(gt.labels[p])[0]) for p in ids if p in gt.labels]
    return pd.Series(tops, dtype=object).value_counts().sort_index()
