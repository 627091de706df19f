"""retrain and simulate end to end on a small synthetic catalog."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from raycat.config import load_config
from raycat.demo import generate_catalog
from raycat.labels import Source
from raycat.pipelines.retrain import run_retrain
from raycat.pipelines.score import binary_entropy
from raycat.pipelines.simulate import _answer_page, oracle_answers, run_simulation
from raycat.run import load_run


@pytest.fixture(scope="module")
def al_config(tmp_path_factory):
    out = tmp_path_factory.mktemp("al")
    summary = generate_catalog(out, 300, seed=4, image_size=32, workers=1)
    data = yaml.safe_load(summary.config_path.read_text())
    data["components"] = {
        "tfidf": {"kind": "linear", "params": {"text": {"colour": "remove"}}}
    }
    data["active_learning"] = {"labels_per_iteration": 40}
    summary.config_path.write_text(yaml.safe_dump(data))
    return summary.config_path


def test_oracle_answers_from_ground_truth_with_noise():
    queue = pd.DataFrame(
        {
            "product_id": ["a", "b", "c"],
            "category": ["x", "x/y", "z"],
            "strategy": ["random", "uncertainty", "random"],
        }
    )
    truth = {"a": {"x", "x/y"}, "b": {"x"}}
    events = oracle_answers(queue, truth, iteration=2)
    assert [(e.product_id, e.category, e.value) for e in events] == [
        ("a", "x", 1),
        ("b", "x/y", 0),
    ]
    assert {e.source for e in events} == {Source.ORACLE}
    assert [e.strategy for e in events] == ["random", "uncertainty"]
    flipped = oracle_answers(queue, truth, iteration=2, noise=1.0)
    assert [e.value for e in flipped] == [0, 1]


def test_retrain_publishes_and_no_update_changes_nothing(ray_session, al_config):
    config = load_config(al_config)
    first = run_retrain(config)
    assert first["iteration"] == 0 and first["published"]
    assert first["page"]["items"] == 40
    current = (config.home_path / "current.json").read_text()
    assert json.loads(current)["model"] == "tfidf"

    run = load_run(config)
    with run.open_store() as store:
        queue0 = store.queue()
    assert len(queue0) == 40 and set(queue0["iteration"]) == {0}
    assert queue0["rule_positive"].notna().all()

    answered = _answer_page(config, 0, noise=0.0, seed=0)
    assert answered > 30

    check = run_retrain(config, no_update=True)
    assert check["iteration"] == 1 and not check["published"]
    assert (config.home_path / "current.json").read_text() == current
    with run.open_store() as store:
        after = store.queue()
        assert len(after) == 40 and set(after["iteration"]) == {0}
        assert store.queue_counts()["done"] == 40

    second = run_retrain(config)
    assert second["iteration"] == 1
    assert second["surprises"], "the returned labels were analysed per strategy"
    assert second["decision"]["shares"]["random"] == pytest.approx(0.5)
    scored = second["model_R_vs_A"]["model_R"]["previous_on_new_random_labels"]
    assert scored["labels"] > 0 and 0 <= scored["precision"] <= 1
    with run.open_store() as store:
        assert set(store.queue()["iteration"]) == {0, 1}


def test_score_pool_in_small_blocks_matches_the_model(ray_session, al_config, tmp_path):
    from ray.data import DataContext

    from raycat.components import load_component
    from raycat.pipelines.score import read_scores, score_pool
    from raycat.pipelines.train_pred import run_train_pred

    config = load_config(al_config).model_copy(update={"home": str(tmp_path)})
    run_train_pred(config)
    before = DataContext.get_current().target_max_block_size
    summary = score_pool(config, out_dir=tmp_path / "scores", block_mib=1)
    assert DataContext.get_current().target_max_block_size == before

    catalog = pd.read_parquet(tmp_path / "catalog.parquet")
    snapshot = sorted((tmp_path / "snapshots").glob("iter-*"))[-1]
    test_ids = set(pd.read_parquet(snapshot / "test.parquet")["product_id"])
    pool = catalog[~catalog["product_id"].isin(test_ids)].sort_values("product_id")
    assert summary["products"] == len(pool) > 0

    scores = read_scores(tmp_path / "scores")
    assert list(scores["product_id"]) == list(pool["product_id"])
    model = load_component(summary["models"]["current"])
    expected = model.predict_proba({c: pool[c].to_numpy() for c in pool.columns})
    np.testing.assert_allclose(scores["p_model"], expected, atol=1e-6)
    np.testing.assert_allclose(
        scores["product_entropy"], binary_entropy(expected).mean(axis=1), atol=1e-5
    )


def test_score_pool_rejects_bad_block_size(al_config):
    from raycat.errors import ConfigError
    from raycat.pipelines.score import score_pool

    with pytest.raises(ConfigError, match="block_mib must be >= 1"):
        score_pool(load_config(al_config), block_mib=0)
    with pytest.raises(ConfigError, match=r"io_cpus must be in \(0, 1\]"):
        score_pool(load_config(al_config), io_cpus=2)


def _scores_file(path, ids, per_category: dict[str, list[list[float]]]) -> None:
    """A scores file laid out as Ray Data writes one: 2-D columns as lists."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"product_id": pa.array(ids, pa.string())}
    for name, rows in per_category.items():
        columns[name] = pa.array(rows, pa.large_list(pa.float32()))
    columns["product_entropy"] = pa.array([0.5] * len(ids), pa.float32())
    pq.write_table(pa.table(columns), path)


def test_read_scores_loads_the_columns_asked_for_sorted_by_id(tmp_path):
    from raycat.pipelines.score import read_scores

    _scores_file(
        tmp_path / "b.parquet",
        ["p3", "p1"],
        {"p_model": [[0.3, 0.03], [0.1, 0.01]], "entropy": [[1, 1], [1, 1]]},
    )
    _scores_file(
        tmp_path / "a.parquet",
        ["p2"],
        {"p_model": [[0.2, 0.02]], "entropy": [[1, 1]]},
    )

    scores = read_scores(tmp_path, columns=("p_model", "p_text"))

    assert set(scores) == {"product_id", "p_model"}
    assert list(scores["product_id"]) == ["p1", "p2", "p3"]
    np.testing.assert_allclose(
        scores["p_model"], [[0.1, 0.01], [0.2, 0.02], [0.3, 0.03]], rtol=1e-6
    )
    everything = read_scores(tmp_path)
    assert everything["entropy"].shape == (3, 2)
    np.testing.assert_allclose(everything["product_entropy"], [0.5] * 3)


def test_read_scores_names_a_ragged_column(tmp_path):
    from raycat.errors import ConfigError
    from raycat.pipelines.score import read_scores

    _scores_file(tmp_path / "a.parquet", ["p1", "p2"], {"p_model": [[0.1], [0.2, 0.3]]})
    with pytest.raises(ConfigError, match="column 'p_model' holds lists of 1 to 2"):
        read_scores(tmp_path)

    (tmp_path / "a.parquet").unlink()
    _scores_file(tmp_path / "a.parquet", ["p1"], {"p_model": [[0.1, 0.2]]})
    _scores_file(tmp_path / "b.parquet", ["p2"], {"p_model": [[0.1, 0.2, 0.3]]})
    with pytest.raises(ConfigError, match=r"holds \(3,\) values per product where"):
        read_scores(tmp_path)


@pytest.mark.slow
def test_simulation_writes_learning_curves(ray_session, al_config, tmp_path):
    config = load_config(al_config)
    config.home = str(tmp_path / "sim")
    result = run_simulation(
        config, iterations=1, labels=30, seeds=1, components=["tfidf"]
    )
    table = pd.read_parquet(result["table"])
    assert set(table["model"]) == {"model_R", "model_A", "random"}
    assert sorted(table["iteration"].unique()) == [0, 1]
    used = table[table["iteration"] == 1]["labels_used"]
    assert (used > 20).all()
    assert table["test_hierarchical_f1"].between(0, 1).all()

    # A second simulation starts from the rule labels again; the first is kept.
    again = run_simulation(
        config, iterations=1, labels=30, seeds=1, components=["tfidf"]
    )
    table = pd.read_parquet(again["table"])
    assert sorted(table["iteration"].unique()) == [0, 1]
    assert len(list((tmp_path / "sim").glob("simulation.previous-*"))) == 1
