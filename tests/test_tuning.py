import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from raycat.config import load_config
from raycat.demo import generate_catalog
from raycat.errors import ConfigError
from raycat.metrics import open_metrics_store
from raycat.tuning.runner import run_tune, summary_rows
from raycat.tuning.spaces import OptunaSpace, TuningSpec, load_spec, merge, nest

SPACE = {
    "trials": 5,
    "max_concurrent": 1,
    "seed": 3,
    "space": {
        "model": {"type": "categorical", "choices": ["logistic", "sgd"]},
        "C": {
            "type": "float",
            "low": 0.5,
            "high": 50,
            "log": True,
            "when": {"model": "logistic"},
        },
        "alpha": {
            "type": "float",
            "low": 1e-6,
            "high": 1e-3,
            "log": True,
            "when": {"model": "sgd"},
        },
        "text.min_df": {"type": "int", "low": 1, "high": 2},
    },
}


def test_conditional_space_samples_only_what_applies():
    spec = TuningSpec.model_validate(SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: OptunaSpace(spec)(t) or 0.0, n_trials=30)
    for trial in study.trials:
        keys = set(trial.params)
        if trial.params["model"] == "logistic":
            assert keys == {"model", "C", "text.min_df"}
        else:
            assert keys == {"model", "alpha", "text.min_df"}
    assert nest({"text.min_df": 2, "C": 1.0}) == {"text": {"min_df": 2}, "C": 1.0}
    assert merge(
        {"text": {"features": "tfidf", "min_df": 1}}, {"text": {"min_df": 2}}
    ) == {"text": {"features": "tfidf", "min_df": 2}}


def test_bad_spaces_are_named(tmp_path):
    bad = tmp_path / "linear.yaml"
    bad.write_text(
        yaml.safe_dump({"space": {"C": {"type": "float", "low": 2, "high": 1}}})
    )
    with pytest.raises(
        ConfigError,
        match=r"space.C: a float parameter needs `low` <= "
        r"`high`; got low=2.0, high=1.0",
    ):
        load_spec(bad)
    bad.write_text(
        yaml.safe_dump(
            {
                "space": {
                    "C": {
                        "type": "float",
                        "low": 1,
                        "high": 2,
                        "when": {"model": "sgd"},
                    }
                }
            }
        )
    )
    with pytest.raises(
        ConfigError,
        match=r"space.C.when refers to 'model', which is "
        r"not a parameter listed before it",
    ):
        load_spec(bad)
    bad.write_text(yaml.safe_dump({"trails": 3}))
    with pytest.raises(
        ConfigError,
        match=r"invalid search space .*linear.yaml:\n  - trails: unknown setting",
    ):
        load_spec(bad)


@pytest.fixture(scope="module")
def tune_config(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tune")
    summary = generate_catalog(out, 300, seed=9, image_size=32, workers=1)
    spaces = out / "spaces"
    spaces.mkdir()
    (spaces / "tfidf.yaml").write_text(yaml.safe_dump(SPACE, sort_keys=False))
    (spaces / "random.yaml").write_text(
        yaml.safe_dump(
            {
                "trials": 2,
                "space": {"smoothing": {"type": "float", "low": 0, "high": 1}},
            }
        )
    )
    data = yaml.safe_load(summary.config_path.read_text())
    data["components"] = {
        "random": {"kind": "random"},
        "tfidf": {"kind": "linear", "split": {"valid_fraction": 0.25, "seed": 4}},
    }
    data["tuning"] = {"spaces_dir": "spaces"}
    summary.config_path.write_text(yaml.safe_dump(data))
    return summary.config_path


def _finished_trials(experiment: Path) -> dict[str, int]:
    """Trial id -> number of final results it wrote."""
    out = {}
    for result in experiment.glob("*/result.json"):
        lines = [json.loads(x) for x in result.read_text().splitlines() if x.strip()]
        done = sum(1 for r in lines if r.get("done") == 1.0 and "val_micro_f1" in r)
        if done:
            out[lines[-1]["trial_id"]] = done
    return out


def test_tune_runs_components_in_parallel_and_saves_the_best(ray_session, tune_config):
    config = load_config(tune_config)
    summary = run_tune(config, ["random", "tfidf"])
    rows = {r["component"]: r for r in summary_rows(summary)}
    assert rows["tfidf"]["trials"] == 5 and rows["random"]["trials"] == 2
    assert (
        rows["tfidf"]["test_hierarchical_f1"] > rows["random"]["test_hierarchical_f1"]
    )
    best = json.loads(
        (config.home_path / "models" / "tfidf" / "best_params.json").read_text()
    )
    assert best["model"] in ("logistic", "sgd")
    saved = json.loads(
        (config.home_path / "models" / "tfidf" / "params.json").read_text()
    )
    assert saved["model"] == best["model"]
    assert len(_finished_trials(config.home_path / "tune" / "tfidf")) == 5

    with open_metrics_store(config.metrics, config.home) as store:
        records = store.read(pipeline="tune", component="tfidf")
    trials = records[records["kind"] == "trial_result"]
    assert trials["trial"].nunique() == 5
    assert trials["metric.val_hierarchical_f1"].notna().all()
    final = records[records["kind"] == "evaluation"]
    assert set(final["split"]) == {"valid", "test"}


def test_killed_search_resumes_without_redoing_trials(
    ray_session, tune_config, tmp_path
):
    experiment = tmp_path / "home" / "tune" / "tfidf"
    # Tune copies results into the experiment folder at its experiment
    # checkpoints, by default every 10 s or more: on 300 products the five trials
    # could all land at once, before the kill.  A checkpoint after every step
    # makes each finished trial visible (and resumable) as it ends.
    env = dict(
        os.environ, RAYCAT_HOME=str(tmp_path / "home"), TUNE_GLOBAL_CHECKPOINT_S="0"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from raycat.cli import main; main()",
            "tune",
            str(tune_config),
            "-c",
            "tfidf",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 240
        while time.time() < deadline and len(_finished_trials(experiment)) < 2:
            time.sleep(0.2)
        before = _finished_trials(experiment)
        assert len(before) >= 2, "the search did not finish two trials in time"
        assert len(before) < 5, "the search finished before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    os.environ["RAYCAT_HOME"] = str(tmp_path / "home")
    try:
        resumed = load_config(tune_config)
    finally:
        del os.environ["RAYCAT_HOME"]
    summary = run_tune(resumed, ["tfidf"], resume=True)
    after = _finished_trials(experiment)
    assert summary["components"][0]["trials"] == 5
    assert len(after) == 5
    for trial_id in before:  # finished before the kill: not run again
        assert after[trial_id] == 1
