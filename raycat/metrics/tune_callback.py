"""A Ray Tune callback that sends every trial result to the metrics store.

Tune runs callbacks in the driver and pickles them with the experiment, so the
store (and any network client in it) is opened in :meth:`setup` or on first use
and never pickled.  Results are buffered and written in batches (every
``flush_records`` results or ``flush_interval_s`` seconds, and whenever a trial
ends), so Elasticsearch gets bulk requests rather than one request per report.

Example::

    callback = MetricsStoreCallback(
        cfg.metrics, cfg.home, run=cfg.name, pipeline="tune", component="xgboost",
        params_key="params",
    )
    tuner = tune.Tuner(trainable, run_config=tune.RunConfig(callbacks=[callback]))
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from raycat.metrics.store import (
    MetricRecord,
    MetricsConfig,
    MetricsStore,
    MetricsStoreError,
    check_pipeline_name,
    open_metrics_store,
)

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

logger = logging.getLogger(__name__)

# Keys Tune adds to every result that are bookkeeping, not metrics ("config"
# becomes the record's params, "training_iteration" its iteration).  Tune's own
# timings (time_this_iter_s, time_total_s) are kept: they are worth plotting.
IGNORED_RESULT_KEYS = frozenset(
    {
        "config",
        "training_iteration",
        "trial_id",
        "experiment_id",
        "experiment_tag",
        "pid",
        "timestamp",
        "date",
        "hostname",
        "node_ip",
        "done",
        "should_checkpoint",
        "checkpoint_dir_name",
        "iterations_since_restore",
        "timesteps_since_restore",
        "time_since_restore",
    }
)


class MetricsStoreCallback(Callback):
    """Writes one :class:`MetricRecord` (kind ``trial_result``) per trial report.

    Args:
        config: the ``metrics`` section of the pipeline config.
        home: the run's folder (where local metric files go).
        run: the run's name (``PipelineConfig.name``).
        pipeline: the pipeline that tunes (``tune``, ``retrain``...).
        component: the component whose hyperparameters are tuned.
        params_key: the key of the trial config that holds the hyperparameters;
            None records the whole trial config.
        split: the split the reported metrics are computed on, if one.
        flush_records: write once this many results are buffered.
        flush_interval_s: write buffered results at least this often.
        max_buffered_records: results kept for a later try while the store
            fails; beyond it the oldest are dropped (with a warning).
    """

    def __init__(
        self,
        config: MetricsConfig,
        home: str | os.PathLike,
        run: str,
        pipeline: str,
        component: str,
        *,
        params_key: str | None = None,
        split: str | None = None,
        # 100 records make a bulk request of some 50 kB; 5 s keeps a live
        # dashboard close to the trials without a request per report.
        flush_records: int = 100,
        flush_interval_s: float = 5.0,
        max_buffered_records: int = 10_000,
    ) -> None:
        if flush_records < 1 or max_buffered_records < flush_records:
            raise ValueError(
                "MetricsStoreCallback needs 1 <= flush_records <= "
                f"max_buffered_records; got flush_records={flush_records}, "
                f"max_buffered_records={max_buffered_records}"
            )
        self.config = config
        self.home = str(home)
        self.run = run
        self.pipeline = check_pipeline_name(pipeline)
        self.component = component
        self.params_key = params_key
        self.split = split
        self.flush_records = flush_records
        self.flush_interval_s = flush_interval_s
        self.max_buffered_records = max_buffered_records

        self._store: MetricsStore | None = None
        self._buffer: list[MetricRecord] = []
        self._last_flush = time.monotonic()
        self._warned_params_key = False
        self.records_written = 0

    # -- pickling: the store stays behind ------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_store"] = None
        # Buffered records belong to this process's run; a copy restored
        # elsewhere must not write them a second time.
        state["_buffer"] = []
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._last_flush = time.monotonic()

    # -- Tune hooks -----------------------------------------------------------

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        # Open now, so an unreachable server stops the experiment before any
        # trial runs rather than after hours of unrecorded ones.
        self._open()

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info
    ):
        metrics = {k: v for k, v in result.items() if k not in IGNORED_RESULT_KEYS}
        self._buffer.append(
            MetricRecord(
                run=self.run,
                pipeline=self.pipeline,
                component=self.component,
                trial=trial.trial_id,
                iteration=result.get("training_iteration"),
                split=self.split,
                kind="trial_result",
                metrics=metrics,
                params=self._params(trial.config),
            )
        )
        due = time.monotonic() - self._last_flush >= self.flush_interval_s
        if len(self._buffer) >= self.flush_records or due:
            self.flush()

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info
    ):
        self.flush()

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info):
        self.flush()

    def on_experiment_end(self, trials: list[Trial], **info):
        self.flush()
        if self._buffer:
            logger.warning(
                "%d metric records of %s/%s could not be written and are lost",
                len(self._buffer),
                self.pipeline,
                self.component,
            )
            self._buffer = []
        self.close()

    # -- the store ------------------------------------------------------------

    def _open(self) -> MetricsStore:
        if self._store is None:
            self._store = open_metrics_store(self.config, self.home)
        return self._store

    def flush(self) -> None:
        """Write the buffered records now."""
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        records, self._buffer = self._buffer, []
        try:
            self.records_written += self._open().write(records)
        except MetricsStoreError as err:
            # A metrics outage must not kill hours of tuning: keep the records
            # for the next flush, within limits.
            self._buffer = records + self._buffer
            excess = len(self._buffer) - self.max_buffered_records
            if excess > 0:
                self._buffer = self._buffer[excess:]
            logger.warning(
                "could not write %d metric records of %s/%s (%s); %s",
                len(records),
                self.pipeline,
                self.component,
                err,
                f"dropped the {excess} oldest"
                if excess > 0
                else "will retry at the next flush",
            )

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _params(self, config: Mapping[str, Any]) -> dict[str, Any]:
        if self.params_key is None:
            return dict(config)
        params = config.get(self.params_key)
        if isinstance(params, Mapping):
            return dict(params)
        if not self._warned_params_key:
            self._warned_params_key = True
            logger.warning(
                "the trial config has no mapping under params_key=%r (keys: %s); "
                "recording the whole trial config as params",
                self.params_key,
                ", ".join(map(str, config)) or "none",
            )
        return dict(config)
