"""Metrics of every trial and evaluation: local files or Elasticsearch.

``MetricsStoreCallback`` (which imports Ray Tune) and
``ElasticsearchMetricsStore`` (which imports the Elasticsearch client) load on
first use, so importing this package needs neither.
"""

from typing import Any

from raycat.metrics.local import LocalMetricsStore
from raycat.metrics.store import (
    BASE_COLUMNS,
    ElasticsearchConfig,
    MetricRecord,
    MetricsConfig,
    MetricsStore,
    MetricsStoreError,
    open_metrics_store,
    records_to_frame,
)

__all__ = [
    "BASE_COLUMNS",
    "ElasticsearchConfig",
    "ElasticsearchMetricsStore",
    "LocalMetricsStore",
    "MetricRecord",
    "MetricsConfig",
    "MetricsStore",
    "MetricsStoreCallback",
    "MetricsStoreError",
    "open_metrics_store",
    "records_to_frame",
]


def __getattr__(name: str) -> Any:
    if name == "MetricsStoreCallback":
        from raycat.metrics.tune_callback import MetricsStoreCallback

        return MetricsStoreCallback
    if name == "ElasticsearchMetricsStore":
        from raycat.metrics.elasticsearch import ElasticsearchMetricsStore

        return ElasticsearchMetricsStore
    raise AttributeError(f"module 'raycat.metrics' has no attribute {name!r}")
