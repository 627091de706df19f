"""Keras components on a tiny synthetic catalog (text keyed to categories,
small drawn JPEGs, one missing and one corrupt image)."""

from __future__ import annotations

import pickle
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("tensorflow")

from raycat.components import ComponentError, component_class, load_component
from raycat.data import ImageDecoder
from raycat.errors import ConfigError
from raycat.taxonomy import Taxonomy

TAX = Taxonomy.from_paths(
    [
        ["Watches", "Wrist"],
        ["Watches", "Wall"],
        ["Kitchen", "Mugs"],
        ["Kitchen", "Pans", "Frying"],
    ]
)
LEAVES = {
    "watches/wrist": ("wrist watch strap dial analog", (200, 30, 30), "circle"),
    "watches/wall": ("wall clock hanging pendulum quartz", (200, 30, 30), "square"),
    "kitchen/mugs": ("coffee mug ceramic tea cup", (30, 30, 200), "circle"),
    "kitchen/pans/frying": ("frying pan nonstick skillet lid", (30, 30, 200), "square"),
}
FILLER = ["great", "new", "best", "quality", "gift", "home"]
IMAGE_SIZE = 32

# Small enough that each component trains in seconds on 2 cores.
TINY = {
    "trainer": "local",
    "epochs": 3,
    "patience": 3,
    "batch_size": 16,
    "learning_rate": 0.01,
    "hidden_units": 16,
    "dropout": 0.0,
    "seed": 1,
}
TINY_TEXT = {"vocab_size": 64, "sequence_length": 8, "embedding_dim": 8}
# A frozen random backbone: its gradients would triple the test's time.
TINY_IMAGE = {"image_size": IMAGE_SIZE, "weights": None, "fine_tune_layers": 0}
# The joint models run eagerly, for two epochs: tracing an LSTM and a backbone
# into graphs costs more than these few batches (the image model and the Ray
# Train test cover graph mode).
TINY_JOINT = {**TINY_TEXT, **TINY_IMAGE, "tower_units": 8, "run_eagerly": True}
WEIGHTS_FILE = "<backbone weights file>"
KINDS = [
    ("embed_mean", TINY_TEXT),
    ("embed_tfidf", {**TINY_TEXT, "class_weight": "balanced"}),
    ("text_cnn", {**TINY_TEXT, "filters": 8, "kernel_sizes": [2, 3]}),
    ("text_lstm", {**TINY_TEXT, "lstm_units": 8}),
    ("image", TINY_IMAGE),
    # "Pretrained" weights from a local file; the top conv layer fine-tuned
    # at a lower learning rate (the 3 layers above it have no weights to train).
    (
        "wide_deep_conv",
        {**TINY_JOINT, "weights": WEIGHTS_FILE, "fine_tune_layers": 4, "epochs": 2},
    ),
    ("rnn_wide_conv", {**TINY_JOINT, "lstm_units": 8, "epochs": 2}),
]


def draw(path, colour, shape, rng) -> None:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (48, 48), (235, 235, 235))
    pen = ImageDraw.Draw(img)
    box = [int(v) for v in rng.integers(4, 12, size=2)] + [40, 40]
    if shape == "circle":
        pen.ellipse(box, fill=colour)
    else:
        pen.rectangle(box, fill=colour)
    img.save(path, "JPEG", quality=90)


def make_frame(n: int, seed: int, folder) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cats = list(LEAVES)
    rows = []
    for i in range(n):
        cid = cats[i % len(cats)]
        words, colour, shape = LEAVES[cid]
        picked = rng.choice(words.split(), size=3).tolist()
        path = folder / f"{seed}-{i}.jpg"
        draw(path, colour, shape, rng)
        rows.append(
            {
                "product_id": f"p{seed}-{i}",
                "title": " ".join([*picked[:2], str(rng.choice(FILLER))]),
                "description": " ".join([picked[2], str(rng.choice(FILLER))]),
                "extra_text": None,
                "colour": "",
                "image": str(path),
                "targets": sorted(TAX.closure([cid])),
            }
        )
    frame = pd.DataFrame(rows)
    # One missing image and one that is not a JPEG at all.
    frame.loc[0, "image"] = str(folder / "missing.jpg")
    (folder / f"corrupt-{seed}.jpg").write_bytes(b"not a jpeg at all")
    frame.loc[1, "image"] = str(folder / f"corrupt-{seed}.jpg")
    return frame


@pytest.fixture(scope="module")
def backbone_weights(tmp_path_factory) -> str:
    """A MobileNetV3Small weights file, standing in for downloaded ones."""
    import keras

    path = tmp_path_factory.mktemp("weights") / "mobilenet_v3_small.weights.h5"
    keras.applications.MobileNetV3Small(
        input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
        include_top=False,
        weights=None,
        pooling="avg",
    ).save_weights(path)
    return str(path)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    folder = tmp_path_factory.mktemp("deep-catalog")
    return (
        make_frame(48, 1, folder),
        make_frame(16, 2, folder),
        make_frame(12, 3, folder),
    )


# -- layers ---------------------------------------------------------------------------


def test_hierarchy_max_is_consistent_on_random_inputs():
    from raycat.components.keras.layers import HierarchyMax

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(32, len(TAX))).astype("float32")
    out = np.asarray(HierarchyMax(TAX.parent_index)(scores))
    assert TAX.is_consistent(out)
    np.testing.assert_allclose(out, TAX.consistent(scores, mode="max"))

    # 1110 categories on 3 levels: one segment max per level, no n x n tensor.
    big = Taxonomy.from_paths(
        [
            [f"a{i}", f"b{j}", f"c{k}"]
            for i in range(10)
            for j in range(10)
            for k in range(10)
        ]
    )
    scores = rng.normal(size=(8, len(big))).astype("float32")
    out = np.asarray(HierarchyMax(big.parent_index)(scores))
    assert out.shape == scores.shape and big.is_consistent(out)


def test_hierarchy_max_rejects_bad_parents():
    from raycat.components.keras.layers import HierarchyMax

    with pytest.raises(ValueError, match="parent_index must hold -1 or a column"):
        HierarchyMax([-1, 5])


def test_weighted_mean_pool_weighs_tokens():
    from raycat.components.keras.layers import WeightedMeanPool

    pool = WeightedMeanPool(4)
    ids = np.array([[2, 3, 0]])
    emb = np.array([[[1.0], [3.0], [100.0]]], dtype="float32")
    pool.build(None)
    np.testing.assert_allclose(np.asarray(pool([ids, emb])), [[2.0]])
    pool.assign_token_weights([0.0, 1.0, 3.0, 1.0])
    np.testing.assert_allclose(np.asarray(pool([ids, emb])), [[1.5]])


def test_backbone_variables_learn_slower():
    import keras

    from raycat.components.keras.layers import SlowBackboneAdam

    fast, slow = keras.Variable([0.0]), keras.Variable([0.0])
    opt = SlowBackboneAdam(slow_factor=0.1, learning_rate=0.5)
    opt.set_slow_variables([slow])
    opt.apply([np.array([1.0]), np.array([1.0])], [fast, slow])
    # Adam's first step moves each variable by about the learning rate.
    np.testing.assert_allclose(
        [float(fast.numpy()[0]), float(slow.numpy()[0])], [-0.5, -0.05], rtol=1e-3
    )


def test_ray_trainer_falls_back_to_this_process_without_ray(monkeypatch, caplog):
    import logging

    import ray

    from raycat.components.keras.training import choose_trainer

    comp = component_class("embed_mean")(TAX, {"trainer": "ray"}, name="fallback")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with caplog.at_level(logging.INFO, logger="raycat.components.keras.training"):
        assert choose_trainer(comp) == "local"
    assert "fallback: Ray is not initialized, so it trains in this process" in (
        caplog.text
    )


def test_image_size_below_32_is_refused():
    with pytest.raises(ConfigError, match=r"image_size: Input should be greater"):
        component_class("image")(TAX, {"image_size": 16})


# -- settings that cannot work fail at once ------------------------------------


def test_more_than_one_worker_fails_clearly(catalog):
    train, valid, _ = catalog
    comp = component_class("embed_mean")(TAX, {**TINY, **TINY_TEXT, "workers": 2})
    with pytest.raises(ComponentError, match=r"workers=2 is not supported: Keras 3"):
        comp.fit(train, valid)


@pytest.mark.parametrize("kind", ["image", "wide_deep_conv"])
def test_missing_weights_file_fails_clearly(kind, catalog, tmp_path):
    train, valid, _ = catalog
    path = tmp_path / "nowhere" / "mobilenet.weights.h5"
    comp = component_class(kind)(TAX, {**TINY, **TINY_IMAGE, "weights": str(path)})
    with pytest.raises(
        ComponentError,
        match=r"the backbone weights file '.*nowhere/mobilenet\.weights\.h5' does "
        r"not exist; set weights to an existing file",
    ):
        comp.fit(train, valid)


# Keras warns that 32 px is not the 224 px the ImageNet weights were made for.
@pytest.mark.filterwarnings("ignore:`input_shape` is undefined")
def test_imagenet_weights_without_network_fail_clearly(monkeypatch):
    import keras.src.utils.file_utils as file_utils

    from raycat.components.keras.image import build_backbone

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network (simulated)")

    monkeypatch.setattr(file_utils, "get_file", offline)
    comp = component_class("image")(TAX, {**TINY, "image_size": 32})
    with pytest.raises(
        ComponentError,
        match=r"could not load the ImageNet weights of mobilenet_v3_small .*"
        r"\$KERAS_HOME/models/",
    ):
        build_backbone(comp)


# -- every component: train, predict, save, load ------------------------------------


@pytest.mark.parametrize(("kind", "params"), KINDS, ids=[k for k, _ in KINDS])
def test_train_predict_save_load(kind, params, catalog, ray_session, tmp_path, request):
    train, valid, test = catalog
    if params.get("weights") == WEIGHTS_FILE:
        params = {**params, "weights": request.getfixturevalue("backbone_weights")}
    comp = component_class(kind)(TAX, {**TINY, **params}, name=f"my-{kind}")
    reports = []
    info = comp.fit(train, valid, report=reports.append)

    assert info["trainer"] == "local" and info["epochs"] == len(reports)
    assert [r["epoch"] for r in reports] == list(range(1, len(reports) + 1))
    assert {"loss", "val_loss"} <= set(reports[0])
    assert reports[-1]["loss"] < reports[0]["loss"]
    if params.get("fine_tune_layers"):
        assert comp.slow_variables(comp.model_), "no backbone variable is tuned"

    probs = comp.predict_proba(test)
    assert probs.shape == (len(test), len(TAX))
    assert TAX.is_consistent(probs)
    # The model's own output is consistent before predict_proba's clean-up.
    assert TAX.is_consistent(comp._predict(test), atol=1e-6)

    comp.save(tmp_path / "m")
    assert (tmp_path / "m" / "model.keras").is_file()
    back = load_component(tmp_path / "m")
    assert back.kind == kind and back.name == f"my-{kind}"
    np.testing.assert_allclose(back.predict_proba(test), probs, rtol=1e-5, atol=1e-6)
    as_dict = {c: test[c].to_numpy() for c in test.columns}
    np.testing.assert_allclose(back.predict_proba(as_dict), probs, rtol=1e-5, atol=1e-6)
    if comp.uses_images:
        # Pixels already decoded in a Ray Data batch are used as they are.
        decoded = ImageDecoder(IMAGE_SIZE)(as_dict)
        assert not decoded["has_image"][:2].any()
        np.testing.assert_allclose(back.predict_proba(decoded), probs, atol=1e-5)


def test_streams_carry_only_what_the_model_reads(catalog, ray_session):
    train, _, _ = catalog
    text = component_class("embed_mean")(TAX, {**TINY, **TINY_TEXT})
    batch = text.stream(train, labels=True).take_batch(4)
    assert set(batch) == {"text", "labels"}
    assert batch["labels"].shape == (4, len(TAX))

    image = component_class("image")(TAX, {**TINY, **TINY_IMAGE})
    batch = image.stream(train, labels=False).take_batch(8)
    assert set(batch) == {"pixels", "has_image"}
    assert batch["pixels"].shape == (8, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert batch["has_image"].tolist() == [0.0, 0.0] + [1.0] * 6


# -- Ray Train ------------------------------------------------------------------------


def test_trains_on_a_ray_train_worker(catalog, ray_session, tmp_path):
    train, valid, test = catalog
    params = {**TINY, **TINY_TEXT, "trainer": "ray", "epochs": 2}
    comp = component_class("embed_tfidf")(TAX, params)
    reports = []
    info = comp.fit(train, valid, report=reports.append)

    assert info["trainer"] == "ray"
    assert [r["epoch"] for r in reports] == [1, 2]
    assert reports[-1]["loss"] < reports[0]["loss"]
    probs = comp.predict_proba(test)
    assert probs.shape == (len(test), len(TAX)) and TAX.is_consistent(probs)
    comp.save(tmp_path / "m")
    np.testing.assert_allclose(
        load_component(tmp_path / "m").predict_proba(test), probs, atol=1e-6
    )
    # Ray ships components to scoring actors by pickle.
    clone = pickle.loads(pickle.dumps(comp))
    np.testing.assert_allclose(clone.predict_proba(test), probs, atol=1e-6)


def test_ray_train_epochs_reach_report_live_and_can_stop_it(ray_session):
    """The caller's report sees each epoch while the run goes on; an exception
    from it asks the worker to stop, and is re-raised."""
    import ray

    from raycat.components.keras.channel import EpochChannel
    from raycat.components.keras.training import _channel_reporter, _run_with_channel

    channel = ray.remote(num_cpus=0)(EpochChannel).remote()
    put = _channel_reporter(channel)

    class FakeTrainer:
        def fit(self):
            put({"epoch": 1, "loss": 0.9})
            put({"epoch": 2, "loss": 0.8})
            deadline = time.monotonic() + 60
            while not ray.get(channel.stopping.remote()):
                assert time.monotonic() < deadline, "no stop request came"
                time.sleep(0.1)
            return SimpleNamespace(error=None)

    seen = []

    def report(row):
        seen.append(row["epoch"])
        if row["epoch"] == 2:
            raise RuntimeError("trial stopped by the tuner")

    result, reported, error = _run_with_channel(FakeTrainer(), channel, report)
    assert result.error is None and seen == [1, 2] and reported == 2
    assert isinstance(error, RuntimeError)


# -- pipelines ------------------------------------------------------------------------


def test_two_streaming_components_train_side_by_side_without_starving(
    catalog, ray_session, tmp_path
):
    """On 2 CPUs, two Keras components training in their tasks would hold both
    CPUs while their Ray Data streams wait for one; train_components keeps a
    CPU free, so both finish."""
    from raycat.config import ComponentSpec
    from raycat.pipelines.train_pred import task_resources, train_components

    train, valid, test = catalog
    dev = pd.concat([train, valid], ignore_index=True)
    params = {**TINY, **TINY_TEXT, "epochs": 1}
    specs = {
        "mean": ComponentSpec(kind="embed_mean", params=params),
        "tfidf": ComponentSpec(kind="embed_tfidf", params=params),
    }
    results = train_components(specs, dev, test, TAX, tmp_path, label="test")
    assert [r["ok"] for r in results] == [True, True], [r.get("error") for r in results]
    assert (tmp_path / "models" / "tfidf" / "model.keras").is_file()

    # A component on a Ray Train worker leaves its task nothing to hold.
    assert task_resources(specs["mean"]) == (1.0, 0.0)
    on_train = ComponentSpec(kind="embed_mean", params={**params, "trainer": "ray"})
    assert task_resources(on_train) == (0.0, 0.0)
