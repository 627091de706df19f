"""The metrics store: records, local files, config from the environment, and
the Ray Tune callback driven by a real (tiny) Tune run."""

from __future__ import annotations

import logging
import multiprocessing
import pickle
from pathlib import Path

import pytest
from pydantic import ValidationError

from raycat.errors import ConfigError
from raycat.metrics import (
    BASE_COLUMNS,
    LocalMetricsStore,
    MetricRecord,
    MetricsConfig,
    MetricsStoreError,
    open_metrics_store,
)

N_WORKERS = 4
WRITES_PER_WORKER = 25
RECORDS_PER_WRITE = 8


def rec(**overrides) -> MetricRecord:
    fields = {
        "run": "tiny",
        "pipeline": "tune",
        "component": "linear",
        "trial": "t1",
        "iteration": 1,
        "split": "valid",
        "kind": "trial_result",
        "metrics": {"loss": 0.5},
        "params": {"C": 1.0},
        "time": 1_700_000_000.0,
    }
    fields.update(overrides)
    return MetricRecord(**fields)


# -- records ------------------------------------------------------------------


def test_record_keeps_finite_numbers_and_flattens_nested_metrics() -> None:
    np = pytest.importorskip("numpy")
    r = rec(
        metrics={
            "loss": np.float32(0.25),
            "valid": {"f1": 0.75, "support": 12},
            "note": "text",
            "done": True,
            "bad": float("nan"),
            "inf": float("inf"),
            "list": [1, 2],
        },
        params={"lr": np.float64(0.1), "text": {"colour": "remove"}, "fn": len},
    )
    assert r.metrics == {"loss": 0.25, "valid/f1": 0.75, "valid/support": 12.0}
    assert r.params == {
        "lr": 0.1,
        "text": {"colour": "remove"},
        "fn": "<built-in function len>",
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "result"}, "kind must be one of trial_result, evaluation; got"),
        ({"split": "dev"}, "split must be one of train, valid, test or None"),
        ({"pipeline": "Tune Run"}, "pipeline name 'Tune Run' cannot name a metrics"),
    ],
)
def test_bad_record_fields_say_what_is_allowed(overrides, message) -> None:
    with pytest.raises(MetricsStoreError, match=message):
        rec(**overrides)


# -- local store --------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_local_store_round_trip(tmp_path: Path, fmt: str) -> None:
    records = [
        rec(trial="t1", iteration=1, metrics={"loss": 0.9}, time=1.0),
        rec(trial="t1", iteration=2, metrics={"loss": 0.4, "acc": 0.8}, time=2.0),
        rec(
            pipeline="train-pred",
            component="xgboost",
            trial=None,
            iteration=None,
            split="test",
            kind="evaluation",
            metrics={"f1": 0.7},
            params={"text": {"features": "tfidf"}, "depth": 3},
            time=3.0,
        ),
    ]
    with open_metrics_store(MetricsConfig(format=fmt), str(tmp_path)) as store:
        assert store.write(records) == 3
        everything = store.read()
        tuned = store.read(pipeline="tune")
        evaluations = store.read(kind="evaluation", component="xgboost")

    assert list(everything.columns[: len(BASE_COLUMNS)]) == list(BASE_COLUMNS)
    assert len(everything) == 3
    assert list(tuned["iteration"]) == [1, 2]
    assert list(tuned["metric.loss"]) == [0.9, 0.4]
    assert tuned["metric.acc"].isna().tolist() == [True, False]
    assert list(tuned["param.C"]) == [1.0, 1.0]

    assert len(evaluations) == 1
    row = evaluations.iloc[0]
    assert (row["pipeline"], row["split"], row["metric.f1"]) == (
        "train-pred",
        "test",
        0.7,
    )
    assert row["param.text.features"] == "tfidf"
    assert evaluations["iteration"].isna().all()

    records_dir = tmp_path / "metrics" / "records"
    if fmt == "jsonl":
        assert sorted(p.name for p in records_dir.iterdir()) == [
            "train-pred.jsonl",
            "tune.jsonl",
        ]
    else:
        parts = list((records_dir / "tune").glob("part-*.parquet"))
        assert len(parts) == 1
        assert not list(records_dir.rglob("*.tmp"))


def test_reading_an_empty_store_gives_the_base_columns(tmp_path: Path) -> None:
    frame = LocalMetricsStore(tmp_path).read(pipeline="tune")
    assert frame.empty
    assert list(frame.columns) == list(BASE_COLUMNS)


def _append_concurrently(home: str, fmt: str, worker: int, barrier) -> None:
    store = LocalMetricsStore(home, format=fmt)
    # Long lines make every write several pages, where torn writes would show.
    padding = "x" * 2000
    barrier.wait()
    for w in range(WRITES_PER_WORKER):
        store.write(
            rec(
                trial=f"w{worker}",
                iteration=w * RECORDS_PER_WRITE + i,
                params={"padding": padding},
            )
            for i in range(RECORDS_PER_WRITE)
        )


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_processes_appending_at_once_lose_nothing(tmp_path: Path, fmt: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(N_WORKERS)
    procs = [
        ctx.Process(target=_append_concurrently, args=(str(tmp_path), fmt, w, barrier))
        for w in range(N_WORKERS)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * N_WORKERS

    frame = LocalMetricsStore(tmp_path, format=fmt).read()
    per_worker = WRITES_PER_WORKER * RECORDS_PER_WRITE
    assert len(frame) == N_WORKERS * per_worker
    for w in range(N_WORKERS):
        mine = frame[frame["trial"] == f"w{w}"]
        assert sorted(mine["iteration"]) == list(range(per_worker))


def test_corrupt_lines_are_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalMetricsStore(tmp_path)
    path = tmp_path / "metrics" / "records" / "tune.jsonl"
    store.write([rec(iteration=1)])
    with path.open("a") as fh:
        fh.write("{not json}\n")
        fh.write('{"run": "tiny"}\n')  # valid JSON, but no pipeline or component
        fh.write('{"run": "tiny", "pipeline": "tu')  # a writer killed mid-line
    # The next write starts on a fresh line, so only the broken one is lost.
    store.write([rec(iteration=2)])

    with caplog.at_level(logging.WARNING, logger="raycat.metrics.local"):
        frame = store.read()

    assert list(frame["iteration"]) == [1, 2]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert messages[0].startswith(f"skipped corrupt metric record at {path} line 2:")
    assert f"{path} line 3: metric record lacks pipeline, component" in messages[1]
    assert f"{path} line 4:" in messages[2]


def test_local_store_needs_a_known_format(tmp_path: Path) -> None:
    with pytest.raises(MetricsStoreError, match=r"metrics\.format must be jsonl or"):
        LocalMetricsStore(tmp_path, format="csv")  # type: ignore[arg-type]


# -- config -------------------------------------------------------------------


@pytest.fixture
def no_es_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("URL", "API_KEY", "USERNAME", "PASSWORD"):
        monkeypatch.delenv(f"RAYCAT_ES_{name}", raising=False)
    return monkeypatch


def test_elasticsearch_settings_come_from_the_environment(no_es_env) -> None:
    no_es_env.setenv("RAYCAT_ES_URL", "https://es.example:9200")
    no_es_env.setenv("RAYCAT_ES_USERNAME", "raycat")
    no_es_env.setenv("RAYCAT_ES_PASSWORD", "s3cret")
    cfg = MetricsConfig.model_validate(
        {"backend": "elasticsearch", "elasticsearch": {"index_prefix": "shop"}}
    )

    es = cfg.elasticsearch.resolved()
    assert es.url == "https://es.example:9200"
    assert (es.username, es.password.get_secret_value()) == ("raycat", "s3cret")
    assert "s3cret" not in repr(es)
    assert cfg.elasticsearch.url is None  # the config itself keeps no secrets

    # The config wins over the environment.
    cfg.elasticsearch.url = "http://127.0.0.1:9201"
    assert cfg.elasticsearch.resolved().url == "http://127.0.0.1:9201"


def test_elasticsearch_api_key_from_the_environment(no_es_env) -> None:
    no_es_env.setenv("RAYCAT_ES_URL", "http://localhost:9200")
    no_es_env.setenv("RAYCAT_ES_API_KEY", "a2V5OnNlY3JldA==")
    es = MetricsConfig(backend="elasticsearch").elasticsearch.resolved()
    assert es.api_key.get_secret_value() == "a2V5OnNlY3JldA=="
    assert es.username is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {},
            "no server URL is set; set metrics.elasticsearch.url or the RAYCAT_ES_URL",
        ),
        (
            {"url": "http://x:9200", "api_key": "k", "username": "u", "password": "p"},
            "both an API key and a username/password; keep one",
        ),
        (
            {"url": "http://x:9200", "username": "u"},
            "has a username but no password; set metrics.elasticsearch.password or "
            "RAYCAT_ES_PASSWORD",
        ),
    ],
)
def test_incomplete_elasticsearch_settings_say_how_to_fix_them(
    no_es_env, settings, message
) -> None:
    cfg = MetricsConfig.model_validate(
        {"backend": "elasticsearch", "elasticsearch": settings}
    )
    with pytest.raises(ConfigError, match=message):
        open_metrics_store(cfg, "unused")


def test_metrics_config_rejects_unknown_and_bad_settings() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        MetricsConfig.model_validate({"backend": "local", "fromat": "parquet"})
    with pytest.raises(ValidationError, match="an index prefix must be lower case"):
        MetricsConfig.model_validate({"elasticsearch": {"index_prefix": "Raycat"}})


# -- the Tune callback --------------------------------------------------------


def test_callback_pickles_without_its_store(tmp_path: Path, no_es_env) -> None:
    from raycat.metrics.tune_callback import MetricsStoreCallback

    # No client at construction: a server that is not there is not contacted.
    es = MetricsConfig(
        backend="elasticsearch", elasticsearch={"url": "http://127.0.0.1:9"}
    )
    copy = pickle.loads(
        pickle.dumps(MetricsStoreCallback(es, tmp_path, "r", "tune", "c"))
    )
    assert copy._store is None

    callback = MetricsStoreCallback(MetricsConfig(), tmp_path, "r", "tune", "c")
    callback.setup()
    callback._buffer.append(rec())
    copy = pickle.loads(pickle.dumps(callback))
    assert (copy._store, copy._buffer) == (None, [])
    assert callback._store is not None and len(callback._buffer) == 1
    callback.on_experiment_end(trials=[])
    assert callback._store is None and callback.records_written == 1


def _trainable(config: dict) -> None:
    from ray import tune

    for step in range(2):
        tune.report(
            {
                "loss": config["params"]["x"] / (step + 1),
                "valid": {"f1": 0.5 + 0.1 * step},
                "tag": "not a metric",
            }
        )


def test_callback_records_every_result_of_a_tune_run(ray_session, tmp_path) -> None:
    from ray import tune

    from raycat.metrics.tune_callback import MetricsStoreCallback

    home = tmp_path / "home"
    callback = MetricsStoreCallback(
        MetricsConfig(),
        home,
        run="tiny",
        pipeline="tune",
        component="linear",
        params_key="params",
        split="valid",
    )
    tuner = tune.Tuner(
        _trainable,
        param_space={"params": {"x": tune.grid_search([1.0, 2.0, 4.0])}, "seed": 0},
        run_config=tune.RunConfig(
            name="metrics-callback",
            storage_path=str(tmp_path / "ray"),
            callbacks=[callback],
            verbose=0,
        ),
    )
    results = tuner.fit()
    assert not results.errors

    frame = LocalMetricsStore(home).read(pipeline="tune")
    assert len(frame) == 3 * 2
    assert set(frame["kind"]) == {"trial_result"}
    assert set(frame["split"]) == {"valid"}
    assert frame["trial"].nunique() == 3
    assert sorted(frame["iteration"]) == [1, 1, 1, 2, 2, 2]
    assert sorted(frame["param.x"].unique()) == [1.0, 2.0, 4.0]
    assert "param.seed" not in frame  # only the params_key part of the config
    assert {"metric.loss", "metric.valid/f1", "metric.time_total_s"} <= set(frame)
    assert not {"metric.pid", "metric.timestamp", "metric.training_iteration"} & set(
        frame
    )
    last = frame[frame["iteration"] == 2].set_index("param.x")["metric.loss"]
    assert last.to_dict() == {1.0: 0.5, 2.0: 1.0, 4.0: 2.0}


def test_settings_of_the_other_backend_are_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = MetricsConfig.model_validate(
        {"backend": "local", "elasticsearch": {"url": "http://127.0.0.1:9"}}
    )
    with caplog.at_level(logging.WARNING, logger="raycat.metrics.store"):
        open_metrics_store(cfg, tmp_path).close()
    assert caplog.messages == [
        "metrics.elasticsearch is ignored: metrics.backend is local; set "
        "`metrics.backend: elasticsearch` to use it"
    ]
