"""Sending a pipeline's evaluations to the run's metrics store."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from raycat.config import PipelineConfig
from raycat.metrics import MetricRecord, open_metrics_store

logger = logging.getLogger(__name__)


def evaluation_records(
    config: PipelineConfig, pipeline: str, results: Iterable[dict[str, Any]]
) -> list[MetricRecord]:
    """One record per component and split from ``train_and_evaluate`` results
    (per-category rows stay in the JSON files; the store gets the headline and
    per-level numbers)."""
    records = []
    for r in results:
        if not r.get("ok"):
            continue
        params = (
            config.components[r["component"]].params
            if r["component"] in (config.components)
            else {}
        )
        params = r.get("params", params)
        for split, metrics in r["metrics"].items():
            flat = {k: v for k, v in metrics.items() if k != "per_category"}
            flat["fit_s"] = r.get("fit_s", 0.0)
            records.append(
                MetricRecord(
                    run=config.name,
                    pipeline=pipeline,
                    component=r["component"],
                    split=split,
                    kind="evaluation",
                    metrics=flat,
                    params=params,
                )
            )
    return records


def record_evaluations(
    config: PipelineConfig, pipeline: str, results: Iterable[dict[str, Any]]
) -> int:
    records = evaluation_records(config, pipeline, results)
    with open_metrics_store(config.metrics, config.home) as store:
        written = store.write(records)
    logger.info(
        "%d evaluation records sent to the %s metrics store",
        written,
        config.metrics.backend,
    )
    return written
