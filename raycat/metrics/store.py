"""Metric records, the metrics store interface and its config.

Every training, tuning and evaluation step writes :class:`MetricRecord` objects
to a :class:`MetricsStore`: either files under the run's home
(:mod:`raycat.metrics.local`, the default) or an Elasticsearch cluster
(:mod:`raycat.metrics.elasticsearch`, the only module that imports the client).

Both stores read records back as the same flat :class:`pandas.DataFrame`: one
row per record, the columns of :data:`BASE_COLUMNS`, then one ``metric.<name>``
column per metric and one ``param.<name>`` column per hyperparameter (nested
parameters joined with dots: ``param.text.features``).  A record without a
given metric or parameter has NaN / None there.

Example config (``metrics:`` in the pipeline YAML)::

    metrics:
      backend: elasticsearch
      elasticsearch:
        url: https://es.example.com:9200   # or RAYCAT_ES_URL
        index_prefix: raycat
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from raycat.errors import ConfigError, RaycatError

logger = logging.getLogger(__name__)

Kind = Literal["trial_result", "evaluation"]
Split = Literal["train", "valid", "test"]
KINDS: tuple[str, ...] = get_args(Kind)
SPLITS: tuple[str, ...] = get_args(Split)

BASE_COLUMNS = (
    "run",
    "pipeline",
    "component",
    "trial",
    "iteration",
    "split",
    "kind",
    "time",
)
"""The columns every frame from :meth:`MetricsStore.read` starts with."""

METRIC_PREFIX = "metric."
PARAM_PREFIX = "param."

# Pipeline names become file names and Elasticsearch index names, which must be
# lower case and free of separators and wildcards.
_PIPELINE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

ENV_URL = "RAYCAT_ES_URL"
ENV_API_KEY = "RAYCAT_ES_API_KEY"
ENV_USERNAME = "RAYCAT_ES_USERNAME"
ENV_PASSWORD = "RAYCAT_ES_PASSWORD"


class MetricsStoreError(RaycatError):
    """The metrics store cannot be opened, written or read."""


# ---------------------------------------------------------------------------
# Config


class _Model(BaseModel):
    # A misspelled setting is an error, never silently ignored.
    model_config = ConfigDict(extra="forbid")


class ElasticsearchConfig(_Model):
    """Where the Elasticsearch cluster is and how to log in.

    ``url``, ``api_key``, ``username`` and ``password`` left out here are read
    from ``RAYCAT_ES_URL``, ``RAYCAT_ES_API_KEY``, ``RAYCAT_ES_USERNAME`` and
    ``RAYCAT_ES_PASSWORD`` when the store opens (:meth:`resolved`), so secrets
    can stay out of the YAML file.
    """

    url: str | None = None
    # The base64 "id:key" form that Kibana and the create-API-key API show.
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    # Indices are <index_prefix>-<pipeline>, e.g. raycat-tune.
    index_prefix: str = "raycat"
    verify_certs: bool = True
    # The cluster's CA file (http_ca.crt of a self-managed 9.x node).
    ca_certs: str | None = None
    # Bulk requests of a few hundred records answer in well under a second;
    # 10 s leaves room for a busy cluster without stalling a Tune driver long.
    request_timeout_s: float = Field(10.0, gt=0)
    # The probe at open time: an unreachable server fails within this time
    # instead of hanging a pipeline.
    connect_timeout_s: float = Field(5.0, gt=0)
    max_retries: int = Field(3, ge=0)
    # First wait before a retry; doubled on each further retry, capped at 30 s.
    retry_backoff_s: float = Field(0.5, gt=0)

    @field_validator("index_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not _PIPELINE_RE.match(value):
            raise ValueError(
                "an index prefix must be lower case letters, digits, '-' or '_' "
                "and start with a letter or digit, as Elasticsearch index names "
                "require; e.g. raycat"
            )
        return value

    def resolved(self) -> ElasticsearchConfig:
        """A copy with the environment filling what the config leaves out.

        Raises :class:`ConfigError` when no URL is known or the credentials are
        incomplete or ambiguous.
        """
        update: dict[str, Any] = {}
        if self.url is None and os.environ.get(ENV_URL):
            update["url"] = os.environ[ENV_URL]
        if self.api_key is None and os.environ.get(ENV_API_KEY):
            update["api_key"] = SecretStr(os.environ[ENV_API_KEY])
        if self.username is None and os.environ.get(ENV_USERNAME):
            update["username"] = os.environ[ENV_USERNAME]
        if self.password is None and os.environ.get(ENV_PASSWORD):
            update["password"] = SecretStr(os.environ[ENV_PASSWORD])
        cfg = self.model_copy(update=update)

        if not cfg.url:
            raise ConfigError(
                "metrics.backend is elasticsearch but no server URL is set; set "
                f"metrics.elasticsearch.url or the {ENV_URL} environment variable "
                "(e.g. https://localhost:9200), or use `metrics.backend: local`"
            )
        if cfg.api_key is not None and (cfg.username or cfg.password):
            raise ConfigError(
                "metrics.elasticsearch has both an API key and a username/password; "
                "keep one of them (check the config and the RAYCAT_ES_* environment "
                "variables)"
            )
        if bool(cfg.username) != bool(cfg.password):
            missing = "password" if cfg.username else "username"
            raise ConfigError(
                f"metrics.elasticsearch has a "
                f"{'username' if cfg.username else 'password'} but no {missing}; set "
                f"metrics.elasticsearch.{missing} or RAYCAT_ES_{missing.upper()}"
            )
        return cfg


class MetricsConfig(_Model):
    """The ``metrics:`` section: where every trial's and evaluation's metrics go."""

    # Local files need no server, so a fresh checkout and CI work out of the box.
    backend: Literal["local", "elasticsearch"] = "local"
    # backend=local: JSON Lines is appendable by many processes at once and
    # readable by eye; Parquet is smaller and faster for many records.
    format: Literal["jsonl", "parquet"] = "jsonl"
    elasticsearch: ElasticsearchConfig = Field(default_factory=ElasticsearchConfig)


# ---------------------------------------------------------------------------
# Records


@dataclass(kw_only=True)
class MetricRecord:
    """One set of metrics: a trial's report, or an evaluation of a component.

    ``metrics`` keeps finite numbers only: nested mappings are flattened with
    ``/`` (as Ray Tune does: ``{"valid": {"f1": 0.8}}`` becomes ``valid/f1``),
    and strings, booleans, lists, None, NaN and infinities are dropped.
    ``params`` keeps JSON values; anything else is stored as its ``str``.
    """

    run: str
    pipeline: str
    component: str
    trial: str | None = None
    # The epoch or training iteration the metrics belong to.
    iteration: int | None = None
    split: str | None = None
    kind: str = "evaluation"
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    # Epoch seconds.
    time: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        check_pipeline_name(self.pipeline)
        if self.kind not in KINDS:
            raise MetricsStoreError(
                f"metric record kind must be one of {', '.join(KINDS)}; "
                f"got {self.kind!r}"
            )
        if self.split is not None and self.split not in SPLITS:
            raise MetricsStoreError(
                f"metric record split must be one of {', '.join(SPLITS)} or None; "
                f"got {self.split!r}"
            )
        if self.trial is not None:
            self.trial = str(self.trial)
        if self.iteration is not None:
            self.iteration = int(self.iteration)
        self.metrics = flatten_metrics(self.metrics)
        self.params = {str(k): to_jsonable(v) for k, v in self.params.items()}
        self.time = float(self.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "pipeline": self.pipeline,
            "component": self.component,
            "trial": self.trial,
            "iteration": self.iteration,
            "split": self.split,
            "kind": self.kind,
            "metrics": dict(self.metrics),
            "params": dict(self.params),
            "time": self.time,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricRecord:
        """The inverse of :meth:`to_dict`; raises on a malformed mapping."""
        missing = [k for k in ("run", "pipeline", "component") if k not in data]
        if missing:
            raise MetricsStoreError(f"metric record lacks {', '.join(missing)}")
        return cls(
            run=data["run"],
            pipeline=data["pipeline"],
            component=data["component"],
            trial=data.get("trial"),
            iteration=data.get("iteration"),
            split=data.get("split"),
            kind=data.get("kind", "evaluation"),
            metrics=dict(data.get("metrics") or {}),
            params=dict(data.get("params") or {}),
            time=data.get("time", 0.0),
        )


def check_pipeline_name(name: str) -> str:
    if not isinstance(name, str) or not _PIPELINE_RE.match(name):
        raise MetricsStoreError(
            f"pipeline name {name!r} cannot name a metrics file or index; use lower "
            "case letters, digits, '-' and '_', starting with a letter or digit "
            "(e.g. train-pred, tune)"
        )
    return name


def _is_number(value: Any) -> bool:
    # bool is an int, but a flag is not a metric; numpy scalars are Real.
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def flatten_metrics(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Finite numbers of ``values``, nested mappings flattened with ``/``."""
    flat: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, f"{name}/"))
        elif _is_number(value):
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(number):
                flat[name] = number
    return flat


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON types; numpy scalars unwrapped, others as str."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        # JSON has no NaN; Elasticsearch rejects it.
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        return to_jsonable(item())
    return str(value)


def _flatten_params(params: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten_params(value, f"{name}."))
        elif isinstance(value, list):
            # A list in one cell would make the column hard to compare.
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def records_to_frame(records: Iterable[MetricRecord]) -> pd.DataFrame:
    """Records as one flat frame (see the module docstring), sorted by time."""
    rows = []
    for r in records:
        row: dict[str, Any] = {c: getattr(r, c) for c in BASE_COLUMNS}
        row.update({f"{METRIC_PREFIX}{k}": v for k, v in r.metrics.items()})
        row.update(_flatten_params(r.params, PARAM_PREFIX))
        rows.append(row)
    frame = pd.DataFrame(rows, columns=None if rows else list(BASE_COLUMNS))

    metric_cols = sorted(c for c in frame.columns if c.startswith(METRIC_PREFIX))
    param_cols = sorted(c for c in frame.columns if c.startswith(PARAM_PREFIX))
    frame = frame[[*BASE_COLUMNS, *metric_cols, *param_cols]]
    frame["iteration"] = frame["iteration"].astype("Int64")
    frame["time"] = frame["time"].astype("float64")
    for col in metric_cols:
        frame[col] = frame[col].astype("float64")
    return frame.sort_values("time", kind="stable", ignore_index=True)


def record_matches(
    record: MetricRecord,
    *,
    run: str | None,
    pipeline: str | None,
    component: str | None,
    kind: str | None,
) -> bool:
    return (
        (run is None or record.run == run)
        and (pipeline is None or record.pipeline == pipeline)
        and (component is None or record.component == component)
        and (kind is None or record.kind == kind)
    )


# ---------------------------------------------------------------------------
# The store


class MetricsStore(ABC):
    """Somewhere metric records are appended to and read back from.

    Use it as a context manager, or call :meth:`close` when done.
    """

    @abstractmethod
    def write(self, records: Iterable[MetricRecord]) -> int:
        """Append ``records``; returns how many were written."""

    @abstractmethod
    def read(
        self,
        *,
        pipeline: str | None = None,
        component: str | None = None,
        kind: str | None = None,
        run: str | None = None,
    ) -> pd.DataFrame:
        """The records matching every given filter, as a flat frame."""

    def close(self) -> None:  # noqa: B027 - a store without resources keeps it
        """Release connections; the store is unusable afterwards."""

    def __enter__(self) -> MetricsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_metrics_store(config: MetricsConfig, home: str | os.PathLike) -> MetricsStore:
    """The store ``config`` names; ``home`` is the run's folder (local files)."""
    if config.backend == "local":
        from raycat.metrics.local import LocalMetricsStore

        if "elasticsearch" in config.model_fields_set:
            logger.warning(
                "metrics.elasticsearch is ignored: metrics.backend is local; set "
                "`metrics.backend: elasticsearch` to use it"
            )

        return LocalMetricsStore(home, format=config.format)

    if "format" in config.model_fields_set:
        logger.warning(
            "metrics.format is ignored: it applies to `metrics.backend: local` only"
        )
    try:
        from raycat.metrics.elasticsearch import ElasticsearchMetricsStore
    except ImportError as err:
        raise MetricsStoreError(
            f"metrics.backend is elasticsearch but its client is missing ({err}); "
            "install it with `pip install 'raycat[es]'` or use "
            "`metrics.backend: local`"
        ) from None
    return ElasticsearchMetricsStore(config.elasticsearch)
