"""The ensembles on tiny seeded data: out-of-fold predictions, the weighted and
stacked combiners, contributions, persistence, selection and bad settings."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raycat.components import Component, load_component
from raycat.components.registry import KINDS
from raycat.config import parse_config
from raycat.ensembles import (
    EnsembleError,
    StackedEnsemble,
    WeightedEnsemble,
    current_model,
)
from raycat.ensembles.contributions import contribution_rows
from raycat.ensembles.oof import assign_folds, cross_fit
from raycat.ensembles.selection import (
    assess_ensemble,
    meta_split,
    rank_models,
    write_current,
)
from raycat.errors import ConfigError
from raycat.evaluation import choose_thresholds, evaluate
from raycat.taxonomy import Taxonomy

TAX = Taxonomy.from_paths(
    [["Bags", "Backpacks"], ["Bags", "Wallets"], ["Toys", "Puzzles"], ["Toys", "Dolls"]]
)


# -- synthetic held-out predictions ---------------------------------------------


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def synthetic(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Labels and three components' probabilities: one informative, one weak,
    one pure noise."""
    rng = np.random.default_rng(seed)
    leaves = TAX.leaves
    y = TAX.multi_hot([[leaves[i]] for i in rng.integers(0, len(leaves), n)])
    signed = 2.0 * y - 1.0
    preds = {
        "good": _sigmoid(2.5 * signed + rng.normal(0, 1.0, y.shape)),
        "weak": _sigmoid(0.6 * signed + rng.normal(0, 1.5, y.shape)),
        "noise": rng.random(y.shape),
    }
    return y, {k: TAX.consistent(v.astype(np.float32)) for k, v in preds.items()}


Y, PREDS = synthetic(600, seed=1)
Y_TEST, PREDS_TEST = synthetic(400, seed=2)


def log_loss(y, p):
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


@pytest.mark.parametrize("metric", ["log_loss", "hierarchical_f1", "micro_f1"])
def test_weighted_weights_are_convex_and_favour_the_best_component(metric):
    ens = WeightedEnsemble(
        TAX, {"components": list(PREDS), "metric": metric, "samples": 16}
    )
    ens.fit_combiner(PREDS, Y)

    w = ens.weight_dict()
    assert min(w.values()) >= 0
    assert sum(w.values()) == pytest.approx(1.0)
    assert max(w, key=w.get) == "good"
    assert w["good"] > 0.5
    probs = ens.combine(PREDS_TEST)
    assert TAX.is_consistent(probs)
    assert log_loss(Y_TEST, probs) < log_loss(Y_TEST, PREDS_TEST["weak"])


def test_weighted_search_is_seeded():
    params = {"components": list(PREDS), "metric": "macro_f1", "samples": 8}
    a = WeightedEnsemble(TAX, {**params, "seed": 3})
    b = WeightedEnsemble(TAX, {**params, "seed": 3})
    a.fit_combiner(PREDS, Y)
    b.fit_combiner(PREDS, Y)
    assert a.weight_dict() == b.weight_dict()


@pytest.mark.parametrize("shared", [False, True])
def test_stacked_beats_the_plain_average_when_one_component_is_noise(shared):
    names = ["good", "noise"]
    ens = StackedEnsemble(
        TAX, {"components": names, "shared_coefficients": shared, "Cs": [0.1, 1.0]}
    )
    ens.fit_combiner({n: PREDS[n] for n in names}, Y)

    stacked = ens.combine(PREDS_TEST)
    average = TAX.consistent(np.mean([PREDS_TEST[n] for n in names], axis=0))
    assert TAX.is_consistent(stacked)
    assert log_loss(Y_TEST, stacked) < log_loss(Y_TEST, average) - 0.05

    def f1(p):
        return evaluate(Y_TEST, p, TAX, choose_thresholds(Y_TEST, p))["micro_f1"]

    assert f1(stacked) >= f1(average)
    coef = ens.contributions()
    assert coef["good"]["overall"] > 5 * abs(coef["noise"]["overall"])
    expected = "shared" if shared else "own"
    assert set(ens.category_sources()) == {expected}


def test_stacked_falls_back_for_rare_categories(caplog):
    y = Y.copy()
    rare = TAX.index["toys/dolls"]
    y[:, rare] = 0
    y[:3, rare] = 1
    for fallback, source in [("shared", "shared"), ("average", "average")]:
        ens = StackedEnsemble(
            TAX,
            {"components": ["good", "weak"], "fallback": fallback, "min_positives": 5},
        )
        with caplog.at_level("INFO", logger="raycat.ensembles.stacked"):
            ens.fit_combiner({n: PREDS[n] for n in ["good", "weak"]}, y)
        assert ens.category_sources()[rare] == source
        assert ens.category_sources().count(source) == 1
    assert "fewer than 5 positive or negative products" in caplog.text


@pytest.mark.parametrize("kind", ["weighted", "stacked"])
def test_leaving_out_components(kind):
    names = ["good", "noise"]
    valid = meta_split([f"p{i}" for i in range(len(Y))], seed=0)

    def fit(members):
        return assess_ensemble(
            kind, {}, members, kind, TAX.to_json(), PREDS, Y, valid, PREDS_TEST, Y_TEST
        )

    full = fit(names)
    without = {left: fit([n for n in names if n != left])["test"] for left in names}
    rows = contribution_rows(full["combiner"], full["test"], without)
    delta = {
        r["component"]: r["delta_hierarchical_f1"] for r in rows if not r["category"]
    }
    assert abs(delta["noise"]) < 0.03
    assert delta["good"] < -0.2
    per_category = [r for r in rows if r["category"]]
    assert len(per_category) == len(names) * len(TAX)


# -- out-of-fold predictions ------------------------------------------------------


class MemorizeComponent(Component):
    """Knows the labels of the products it was trained on, nothing else: any
    leak of a product's own fold into its training data shows as a 1."""

    kind = "memorize"

    def fit(self, train, valid, *, report=None):
        self.known_ = dict(
            zip(
                train["product_id"], self.targets(train).astype(np.float32), strict=True
            )
        )
        self.fitted_ = True
        return {}

    def _predict(self, batch):
        blank = np.full(len(self.taxonomy), 0.5, dtype=np.float32)
        return np.stack([self.known_.get(p, blank) for p in batch["product_id"]])

    def _save(self, folder):
        pass

    def _load(self, folder):
        pass


def product_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    words = {
        "bags/backpacks": "backpack school laptop straps zipper",
        "bags/wallets": "wallet leather card coin slim",
        "toys/puzzles": "puzzle jigsaw pieces board brain",
        "toys/dolls": "doll dress hair baby pretty",
    }
    cats = list(words)
    rows = []
    for i in range(n):
        cat = cats[i % 4]
        text = rng.choice(words[cat].split(), size=4).tolist()
        rows.append(
            {
                "product_id": f"s{seed}-{i:03d}",
                "title": " ".join(text[:2]),
                "description": " ".join(text[2:]),
                "extra_text": "",
                "colour": "",
                "image": None,
                "targets": sorted(TAX.closure([cat])),
            }
        )
    return pd.DataFrame(rows)


def test_out_of_fold_predictions_never_see_their_own_fold(monkeypatch):
    monkeypatch.setitem(KINDS, "memorize", f"{__name__}:MemorizeComponent")
    dev = product_frame(60, seed=4)

    oof = cross_fit("memo", {"kind": "memorize"}, TAX, dev, k=3, seed=9)

    assert sorted(oof["product_id"]) == sorted(dev["product_id"])
    folds = dict(
        zip(dev["product_id"], assign_folds(dev["product_id"], 3, 9), strict=True)
    )
    assert (oof["fold"] == oof["product_id"].map(folds)).all()
    assert set(oof["fold"]) == {0, 1, 2}
    # Every product was predicted by a model that had never seen it.
    assert (oof[TAX.ids].to_numpy() == 0.5).all()


def test_folds_are_seeded_and_independent_of_order():
    ids = [f"p{i}" for i in range(200)]
    a = assign_folds(ids, 5, seed=1)
    b = assign_folds(ids[::-1], 5, seed=1)[::-1]
    assert (a == b).all()
    assert set(a) == set(range(5))
    assert (a != assign_folds(ids, 5, seed=2)).any()
    with pytest.raises(EnsembleError, match=r"ensemble\.folds must be at least 2"):
        assign_folds(ids, 1, seed=0)


def test_meta_dataset_joins_components_on_product_id(ray_session, tmp_path: Path):
    from raycat.ensembles.meta import compose_meta_dataset
    from raycat.ensembles.oof import write_oof

    ids = [f"p{i:02d}" for i in range(40)]
    paths = {}
    for offset, name in [(0.0, "a"), (0.5, "b")]:
        order = np.random.default_rng(len(name) + int(offset * 10)).permutation(40)
        frame = pd.DataFrame(
            {cid: [offset + int(ids[i][1:]) / 100 for i in order] for cid in TAX.ids}
        )
        frame.insert(0, "fold", [int(ids[i][1:]) % 3 for i in order])
        frame.insert(0, "product_id", [ids[i] for i in order])
        paths[name] = write_oof(tmp_path / f"{name}.parquet", frame)

    meta = compose_meta_dataset(paths, TAX, seed=1, batch_size=16)

    assert sorted(meta.product_ids) == ids
    number = np.asarray([int(p[1:]) for p in meta.product_ids])
    assert (meta.folds == number % 3).all()
    np.testing.assert_allclose(meta.preds["a"][:, 0], number / 100, atol=1e-6)
    np.testing.assert_allclose(meta.preds["b"][:, -1], 0.5 + number / 100, atol=1e-6)
    assert meta.preds["a"].shape == (40, len(TAX))


# -- persistence ------------------------------------------------------------------


@pytest.mark.parametrize("cls", [WeightedEnsemble, StackedEnsemble])
def test_save_load_round_trip(cls, tmp_path: Path):
    from raycat.components import component_class

    train, valid, test = (product_frame(n, s) for n, s in [(80, 1), (40, 2), (20, 3)])
    members = {
        "random": component_class("random")(TAX, name="random"),
        "words": component_class("linear")(TAX, {"C": 1.0}, name="words"),
    }
    ens = cls(
        TAX,
        {"min_positives": 3} if cls is StackedEnsemble else {},
        name="e",
        members=members,
    )
    info = ens.fit(train, valid)
    assert info["members_trained"] == ["random", "words"]
    probs = ens.predict_proba(test)

    folder = ens.save(tmp_path / "ensemble")
    assert (folder / "members" / "words" / "component.json").is_file()
    again = load_component(folder)
    assert isinstance(again, cls)
    assert again.component_names == ["random", "words"]
    np.testing.assert_allclose(again.predict_proba(test), probs, atol=1e-6)
    assert TAX.is_consistent(probs)


def test_ensembles_name_their_mistakes():
    with pytest.raises(ConfigError, match=r"metric: Input should be 'log_loss'"):
        WeightedEnsemble(TAX, {"components": ["a", "b"], "metric": "accuracy"})
    with pytest.raises(EnsembleError, match="no components; name them"):
        StackedEnsemble(TAX)
    ens = WeightedEnsemble(TAX, {"components": ["a", "b"]})
    with pytest.raises(EnsembleError, match=r"predictions of \['b'\] are missing"):
        ens.fit_combiner({"a": PREDS["good"]}, Y)
    with pytest.raises(EnsembleError, match="the combiner is not fitted"):
        ens.combine({"a": PREDS["good"], "b": PREDS["weak"]})
    with pytest.raises(EnsembleError, match=r"lack \['b'\] and add \['c'\]"):
        ens.set_members({"a": WeightedEnsemble, "c": WeightedEnsemble})


# -- configuration ----------------------------------------------------------------

BASE = {
    "dataset": {
        "catalog": {"path": "products.csv"},
        "taxonomy": {"column": "path"},
    }
}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"folds": 1}, r"ensemble.folds: Input should be greater than or equal to 2"),
        ({"components": ["only"]}, r"at least 2 distinct components"),
        ({"stacked": {"Cs": [1.0, 0]}}, r"ensemble.stacked: Cs must be a non-empty"),
        ({"stacked": {"cv": 6, "min_positives": 4}}, r"cv \(6\) must not exceed"),
        ({"weighted": {"metric": "auc"}}, r"ensemble.weighted.metric: Input should"),
        ({"selection_metric": "accuracy"}, r"ensemble.selection_metric: Input"),
        ({"fold": 3}, r"ensemble.fold: unknown setting"),
    ],
)
def test_bad_ensemble_settings_are_named(section, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({**BASE, "ensemble": section})


def test_defaults():
    ens = parse_config(BASE).ensemble
    assert ens.folds == 5
    assert ens.components is None
    assert ens.selection_metric == "hierarchical_f1"
    assert ens.weighted.metric == "log_loss"
    assert not ens.stacked.shared_coefficients


def test_unknown_or_untrained_members_are_named(tmp_path: Path):
    from raycat.pipelines.ensemble import ensemble_members

    cfg = parse_config({**BASE, "ensemble": {"components": ["hist_colour", "nope"]}})
    with pytest.raises(ConfigError, match=r"ensemble.components names \['nope'\]"):
        ensemble_members(cfg, tmp_path)
    cfg = parse_config(
        {**BASE, "components": {"a": {"kind": "linear"}, "b": {"kind": "random"}}}
    )
    with pytest.raises(ConfigError, match=r"at least 2 trained components; found \[\]"):
        ensemble_members(cfg, tmp_path)


# -- selection --------------------------------------------------------------------


def test_current_model_round_trip(tmp_path: Path):
    assert current_model(tmp_path) is None
    written = write_current(
        tmp_path, "stacked_ensemble", tmp_path / "m", "micro_f1", 0.8
    )
    assert current_model(tmp_path) == written
    assert written["version"].endswith("Z")
    (tmp_path / "current.json").write_text("{")
    with pytest.raises(EnsembleError, match="rerun `raycat ensemble CONFIG`"):
        current_model(tmp_path)


def test_ranking_prefers_the_first_of_equals():
    ranking = rank_models({"a": 0.5, "b": 0.7, "c": 0.7}, "micro_f1")
    assert [n for n, _ in ranking] == ["b", "c", "a"]


def test_meta_split_halves_the_products():
    valid = meta_split([f"p{i}" for i in range(1000)], seed=0)
    assert 0.45 < valid.mean() < 0.55
