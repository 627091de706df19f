import json

import numpy as np
import pytest
import yaml

from raycat.components import load_component
from raycat.config import load_config
from raycat.demo import generate_catalog
from raycat.errors import ConfigError
from raycat.metrics import open_metrics_store
from raycat.pipelines.train_pred import (
    read_predictions,
    run_train_pred,
    select_components,
)
from raycat.taxonomy import Taxonomy


@pytest.fixture(scope="module")
def demo_config(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    summary = generate_catalog(out, 400, seed=5, image_size=32, workers=1)
    data = yaml.safe_load(summary.config_path.read_text())
    data["components"] = {
        "random": {"kind": "random"},
        "tfidf": {"kind": "linear", "params": {"text": {"colour": "remove"}}},
        "xgb": {"kind": "xgboost", "params": {"n_estimators": 15, "max_depth": 3}},
        "broken": {"kind": "linear", "params": {"text": {"min_df": 100000}}},
    }
    summary.config_path.write_text(yaml.safe_dump(data))
    return summary.config_path


def test_train_pred_on_a_synthetic_catalog(ray_session, demo_config):
    config = load_config(demo_config)
    summary = run_train_pred(config)
    results = {r["component"]: r for r in summary["components"]}

    # A failing component is reported and does not stop the others.
    assert not results["broken"]["ok"]
    assert "ValueError" in results["broken"]["error"]
    ok = {k: v for k, v in results.items() if v["ok"]}
    assert set(ok) == {"random", "tfidf", "xgb"}

    test_f1 = {k: v["metrics"]["test"]["hierarchical_f1"] for k, v in ok.items()}
    assert test_f1["tfidf"] > test_f1["random"] + 0.2
    assert test_f1["xgb"] > test_f1["random"]

    home = config.home_path
    saved = json.loads((home / "metrics" / "train-pred.json").read_text())
    assert [c["component"] for c in saved["components"]] == list(results)
    taxonomy = Taxonomy.load(home / "taxonomy.json")
    ids, probs = read_predictions(
        home / "predictions" / "tfidf" / "test.parquet", taxonomy
    )
    assert len(ids) == summary["n_test"] and probs.shape[1] == len(taxonomy)
    assert taxonomy.is_consistent(probs)
    params = json.loads((home / "models" / "tfidf" / "params.json").read_text())
    assert params["text"]["colour"] == "remove"
    with open_metrics_store(config.metrics, config.home) as store:
        records = store.read(pipeline="train-pred")
    assert set(records["component"]) == {"random", "tfidf", "xgb"}
    assert set(records["split"]) == {"valid", "test"}
    assert (records["metric.hierarchical_f1"] >= 0).all()

    model = load_component(home / "models" / "tfidf")
    catalog = __import__("pandas").read_parquet(home / "catalog.parquet")
    again = model.predict_proba(catalog.set_index("product_id").loc[ids].reset_index())
    np.testing.assert_allclose(again, probs, atol=1e-6)


def test_unknown_component_names_are_listed(demo_config):
    config = load_config(demo_config)
    with pytest.raises(
        ConfigError,
        match=r"--components names \['nope'\], which the "
        r"config does not define; configured components: \['broken'",
    ):
        select_components(config, ["nope"])
