"""The whole ensemble pipeline on a small synthetic catalog, after train-pred."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from raycat.components import load_component
from raycat.config import load_config
from raycat.demo import generate_catalog
from raycat.ensembles import StackedEnsemble, WeightedEnsemble, current_model
from raycat.pipelines.ensemble import headline, run_ensemble
from raycat.pipelines.train_pred import read_predictions, run_train_pred
from raycat.taxonomy import Taxonomy


@pytest.fixture(scope="module")
def trained_config(tmp_path_factory, ray_session):
    out = tmp_path_factory.mktemp("ensemble-demo")
    summary = generate_catalog(out, 400, seed=5, image_size=32, workers=1)
    data = yaml.safe_load(summary.config_path.read_text())
    data["components"] = {
        "random": {"kind": "random"},
        "tfidf": {"kind": "linear", "params": {"text": {"colour": "remove"}}},
        "hist": {"kind": "linear", "params": {"text": {"features": "histogram"}}},
    }
    # By default the ensembles combine every component but the random baseline.
    data["ensemble"] = {"folds": 3, "seed": 2}
    summary.config_path.write_text(yaml.safe_dump(data))
    config = load_config(summary.config_path)
    run_train_pred(config)
    return config


def test_run_ensemble_selects_and_explains(trained_config):
    summary = run_ensemble(trained_config)
    home = trained_config.home_path

    # Every dev product has exactly one out-of-fold prediction per component.
    taxonomy = Taxonomy.load(home / "taxonomy.json")
    oof = pd.read_parquet(home / "oof" / "tfidf.parquet")
    assert len(oof) == summary["n_dev"] == oof["product_id"].nunique()
    assert set(oof["fold"]) == {0, 1, 2}
    assert not summary["oof"]["errors"]

    # Each member and both ensembles are judged on meta-valid and test.
    models = summary["models"]
    assert set(models) == {"tfidf", "hist", "weighted_ensemble", "stacked_ensemble"}
    assert summary["components"]["tfidf"]["params_from"] == "saved"
    test_f1 = {n: m["test"]["hierarchical_f1"] for n, m in models.items()}
    for name in ("weighted_ensemble", "stacked_ensemble"):
        assert test_f1[name] > 0.5

    # The current model is the best on meta-valid, and loads.
    current = current_model(home)
    metric = trained_config.ensemble.selection_metric
    best = max(models, key=lambda n: models[n]["valid"][metric])
    assert current["model"] == best == summary["selection"]["chosen"]
    assert current["metric"] == metric
    assert current["value"] == pytest.approx(models[best]["valid"][metric])
    assert load_component(current["path"]).fitted_

    # The saved ensembles are self-contained and reproduce their predictions.
    catalog = pd.read_parquet(home / "catalog.parquet").set_index("product_id")
    for name, cls in [
        ("weighted_ensemble", WeightedEnsemble),
        ("stacked_ensemble", StackedEnsemble),
    ]:
        ens = load_component(home / "models" / name)
        assert isinstance(ens, cls)
        assert (home / "models" / name / "members" / "hist" / "component.json").exists()
        ids, probs = read_predictions(
            home / "predictions" / name / "test.parquet", taxonomy
        )
        again = ens.predict_proba(catalog.loc[ids].reset_index())
        np.testing.assert_allclose(again, probs, atol=1e-5)

    # Contributions: weights, and test F1 changes when a member is left out.
    table = pd.read_parquet(home / "metrics" / "contributions.parquet")
    overall = table[table["category"].isna()]
    assert len(overall) == 4
    weights = overall[overall["kind"] == "weighted"].set_index("component")["weight"]
    assert weights.sum() == pytest.approx(1.0)
    assert overall["delta_hierarchical_f1"].notna().all()
    assert len(table) == 4 + 4 * len(taxonomy)
    assert {"delta_micro_f1", "delta_macro_f1", "delta_hierarchical_f1"} <= set(table)

    saved = json.loads((home / "metrics" / "ensemble.json").read_text())
    assert saved["selection"]["chosen"] == best
    assert len(saved["contributions"]) == 4
    rows = headline(saved)
    assert [r["current"] for r in rows].count("*") == 1
