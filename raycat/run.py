"""A run: its home folder, and everything read from the config to work on it.

``load_run`` reads the catalog, the taxonomy, the ground truth and the rules
without writing anything.  ``prepare_run`` then lays out the run's home:

    <home>/
      taxonomy.json          the category tree, ids in column order
      catalog.parquet        the catalog in raycat's canonical columns
      labels.sqlite          the label store (rule, ground-truth, human, oracle)
      snapshots/iter-NNN/    dev.parquet and test.parquet dumped for training
      models/  metrics/  predictions/  queue/

Training reads snapshots, never the label store, so a run can be repeated
exactly from its snapshot.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from raycat.catalog import Catalog, build_taxonomy, load_catalog
from raycat.config import PipelineConfig
from raycat.groundtruth import GroundTruth, ground_truth_for
from raycat.labels import LabelEvent, Source
from raycat.labels.store import LabelStore, open_label_store
from raycat.rules import Rule, apply_rules, load_rules, rule_label_events
from raycat.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

SUBDIRS = ("snapshots", "models", "metrics", "predictions", "queue")
LABEL_SOURCES = (Source.RULE, Source.HUMAN, Source.ORACLE)


@dataclass
class RunPaths:
    home: Path

    @property
    def taxonomy(self) -> Path:
        return self.home / "taxonomy.json"

    @property
    def catalog(self) -> Path:
        return self.home / "catalog.parquet"

    @property
    def labels(self) -> Path:
        return self.home / "labels.sqlite"

    def snapshot(self, iteration: int) -> Path:
        return self.home / "snapshots" / f"iter-{iteration:03d}"

    def latest_snapshot(self) -> Path | None:
        found = sorted((self.home / "snapshots").glob("iter-*"))
        return found[-1] if found else None


def set_aside(path: Path) -> Path | None:
    """Rename an existing ``path`` to ``<name>.previous-<unix time>`` beside it,
    so a fresh start loses nothing; returns the new name, or None."""
    if not path.exists():
        return None
    kept = path.with_name(f"{path.name}.previous-{int(time.time())}")
    shutil.move(str(path), str(kept))
    return kept


@dataclass
class Run:
    """What a pipeline stage needs: the config and what was read from it."""

    config: PipelineConfig
    catalog: Catalog
    taxonomy: Taxonomy
    ground_truth: GroundTruth
    rules: list[Rule] = field(default_factory=list)

    @property
    def paths(self) -> RunPaths:
        return RunPaths(Path(self.config.home))

    def open_store(self) -> LabelStore:
        return open_label_store(self.config.home, self.taxonomy)


def load_run(config: PipelineConfig) -> Run:
    """Read catalog, taxonomy, ground truth and rules; write nothing."""
    catalog = load_catalog(config)
    taxonomy = build_taxonomy(config, catalog)
    gt = ground_truth_for(config, catalog, taxonomy)
    rules = load_rules(config.dataset.rules, taxonomy) if config.dataset.rules else []
    return Run(config, catalog, taxonomy, gt, rules)


def prepare_run(config: PipelineConfig, *, iteration: int = 0) -> tuple[Run, Path]:
    """Lay out the run's home, record rule and ground-truth labels in the label
    store, and dump the dev and test snapshots of ``iteration``.

    Safe to repeat: labels are upserts, and files are rewritten whole.
    Returns the run and the snapshot folder.
    """
    run = load_run(config)
    paths = run.paths
    paths.home.mkdir(parents=True, exist_ok=True)
    for sub in SUBDIRS:
        (paths.home / sub).mkdir(exist_ok=True)
    run.taxonomy.save(paths.taxonomy)
    write_catalog(run.catalog.products, paths.catalog)

    with run.open_store() as store:
        if run.rules:
            matches = apply_rules(run.rules, run.catalog.products)
            store.write(rule_label_events(matches))
        gt_events = [
            LabelEvent(pid, cid, 1, Source.GROUND_TRUTH, labeler="ground_truth")
            for pid in run.ground_truth.test_ids
            for cid in run.ground_truth.labels[pid]
        ]
        store.write(gt_events)
        snap = dump_snapshots(run, store, iteration)
    return run, snap


def write_catalog(products: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(products, preserve_index=False)
    pq.write_table(table, path)


def dump_snapshots(run: Run, store: LabelStore, iteration: int) -> Path:
    """Write ``dev.parquet`` (pool products with their current labels, by source)
    and ``test.parquet`` (test products with their ground truth, closed under
    ancestors) for ``iteration``."""
    out = run.paths.snapshot(iteration)
    out.mkdir(parents=True, exist_ok=True)
    pool = run.ground_truth.pool_ids
    current = store.current(sources=[s.value for s in LABEL_SOURCES])
    dev = pd.DataFrame({"product_id": pool})
    pool_set = set(pool)
    current = current[current["product_id"].isin(pool_set)]
    for source in LABEL_SOURCES:
        for value, prefix in ((1, "pos"), (0, "neg")):
            part = current[
                (current["source"] == source.value) & (current["value"] == value)
            ]
            grouped = part.groupby("product_id")["category"].agg(sorted)
            dev[f"{prefix}_{source.value}"] = [
                grouped.get(pid, []) for pid in dev["product_id"]
            ]
    pq.write_table(pa.Table.from_pandas(dev, preserve_index=False), out / "dev.parquet")

    closed = run.ground_truth.closed(run.taxonomy)
    test = pd.DataFrame({"product_id": run.ground_truth.test_ids})
    test["labels"] = [sorted(closed[pid]) for pid in test["product_id"]]
    pq.write_table(
        pa.Table.from_pandas(test, preserve_index=False), out / "test.parquet"
    )
    labeled = int((dev.filter(like="pos_").map(len).sum(axis=1) > 0).sum())
    logger.info(
        "snapshot %s: %d pool products (%d with a positive label), %d test products",
        out,
        len(dev),
        labeled,
        len(test),
    )
    return out
