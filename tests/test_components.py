import numpy as np
import pandas as pd
import pytest

from raycat.components import ComponentError, component_class, load_component
from raycat.errors import ConfigError
from raycat.taxonomy import Taxonomy

TAX = Taxonomy.from_paths(
    [
        ["Watches", "Wrist"],
        ["Watches", "Wall"],
        ["Kitchen", "Mugs"],
        ["Kitchen", "Pans"],
    ]
)
VOCAB = {
    "watches/wrist": "wrist watch strap dial analog chronograph",
    "watches/wall": "wall clock hanging round pendulum quartz",
    "kitchen/mugs": "coffee mug ceramic tea cup handle",
    "kitchen/pans": "frying pan nonstick cookware skillet lid",
}
COLOURS = ["red", "blue", "black", "white"]
FILLER = ["great", "new", "best", "quality", "gift", "home"]


def make_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cats = list(VOCAB)
    rows = []
    for i in range(n):
        c = cats[i % len(cats)]
        words = rng.choice(VOCAB[c].split(), size=3).tolist()
        filler = rng.choice(FILLER, size=2).tolist()
        rows.append(
            {
                "product_id": f"p{seed}-{i}",
                "title": " ".join(words[:2] + filler[:1]),
                "description": " ".join(words[2:] + filler[1:]),
                "extra_text": "",
                "colour": str(rng.choice(COLOURS)),
                "image": None,
                "targets": sorted(TAX.closure([c])),
            }
        )
    return pd.DataFrame(rows)


TRAIN, VALID, TEST = make_frame(80, 1), make_frame(20, 2), make_frame(40, 3)

KINDS = [
    ("random", {}),
    ("linear", {"text": {"features": "histogram", "colour": "feature"}}),
    ("linear", {"text": {"features": "tfidf", "colour": "remove"}}),
    ("linear", {"model": "sgd", "class_weight": "balanced"}),
    ("xgboost", {"n_estimators": 10, "max_depth": 2, "class_weight": "balanced"}),
]


@pytest.mark.parametrize(("kind", "params"), KINDS)
def test_fit_predict_save_load(kind, params, tmp_path):
    comp = component_class(kind)(TAX, params, name=f"my-{kind}")
    comp.fit(TRAIN, VALID)
    probs = comp.predict_proba(TEST)
    assert probs.shape == (len(TEST), len(TAX))
    assert TAX.is_consistent(probs)
    assert ((probs >= 0) & (probs <= 1)).all()

    comp.save(tmp_path / "m")
    assert (tmp_path / "m" / "params.json").is_file()
    back = load_component(tmp_path / "m")
    assert back.name == f"my-{kind}" and back.kind == kind
    np.testing.assert_allclose(back.predict_proba(TEST), probs, rtol=1e-5, atol=1e-6)
    # A Ray Data batch is a dict of numpy arrays: the same prediction.
    as_dict = {c: TEST[c].to_numpy() for c in TEST.columns}
    np.testing.assert_allclose(comp.predict_proba(as_dict), probs, rtol=1e-5)


@pytest.mark.parametrize("kind", ["linear", "xgboost"])
def test_text_models_beat_random(kind):
    y = TAX.multi_hot(TEST["targets"].tolist())
    rand = component_class("random")(TAX)
    rand.fit(TRAIN, VALID)
    model = component_class(kind)(
        TAX, {"n_estimators": 20} if kind == "xgboost" else {}
    )
    model.fit(TRAIN, VALID)

    def accuracy(p):  # the argmax leaf is the right one
        leaves = [TAX.index[c] for c in TAX.leaves]
        return float((p[:, leaves].argmax(1) == y[:, leaves].argmax(1)).mean())

    assert accuracy(model.predict_proba(TEST)) > 0.9
    assert (
        accuracy(model.predict_proba(TEST)) > accuracy(rand.predict_proba(TEST)) + 0.4
    )


def test_random_predicts_training_frequencies():
    comp = component_class("random")(TAX)
    comp.fit(TRAIN, VALID)
    p = comp.predict_proba(TEST.head(2))
    assert p[0, TAX.index["watches"]] == pytest.approx(0.5)
    assert p[0, TAX.index["kitchen/mugs"]] == pytest.approx(0.25)


def test_bad_hyperparameters_are_named():
    with pytest.raises(
        ConfigError,
        match=r"component 'lin' \(linear\): invalid hyper"
        r"parameters: C: Input should be greater than 0",
    ):
        component_class("linear")(TAX, {"C": -1}, name="lin")
    with pytest.raises(ConfigError, match=r"Extra inputs are not permitted"):
        component_class("random")(TAX, {"nope": 1})
    with pytest.raises(ConfigError, match=r"class_weight must be null or 'balanced'"):
        component_class("linear")(TAX, {"class_weight": "heavy"}).fit(TRAIN, VALID)


def test_unknown_kind_and_unfitted_and_missing_model(tmp_path):
    with pytest.raises(ComponentError, match=r"unknown component kind 'nope'; known"):
        component_class("nope")
    with pytest.raises(ComponentError, match=r"is not trained; call fit\(\)"):
        component_class("random")(TAX).predict_proba(TEST)
    with pytest.raises(ComponentError, match=r"holds no saved component"):
        load_component(tmp_path)
