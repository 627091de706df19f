import logging

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from raycat.data import (
    CATALOG_COLUMNS,
    ImageDecoder,
    load_frame,
    read_split,
    split_train_valid,
    targets_from_sources,
    with_images,
)
from raycat.errors import LabelStoreError


@pytest.fixture
def three_images(tmp_path):
    good = tmp_path / "good.jpg"
    Image.new("RGB", (40, 20), (255, 0, 0)).save(good)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(good.read_bytes()[:60])  # a truncated JPEG
    return [str(good), str(tmp_path / "missing.jpg"), str(corrupt), None]


def test_decoder_flags_missing_and_corrupt_images(three_images, caplog):
    batch = {
        "product_id": np.array(["a", "b", "c", "d"]),
        "image": np.array(three_images, dtype=object),
    }
    with caplog.at_level(logging.INFO, logger="raycat.data"):
        out = ImageDecoder(16)(batch)
    assert out["pixels"].shape == (4, 16, 16, 3)
    assert out["pixels"].dtype == np.float32
    assert out["has_image"].tolist() == [True, False, False, False]
    assert out["pixels"][0, :, :, 0].mean() > 0.95  # red survives decoding
    assert out["pixels"][1:].max() == 0.0  # blank input for the model
    assert "3 of 4 images in a batch missing or unreadable" in caplog.text


def test_images_decode_while_streaming_through_ray_data(ray_session, three_images):
    import ray.data as rd

    ds = rd.from_items(
        [{"product_id": str(i), "image": p or ""} for i, p in enumerate(three_images)]
    )
    rows = sorted(
        with_images(ds, 8, batch_size=2, dtype="uint8").take_all(),
        key=lambda r: r["product_id"],
    )
    assert [bool(r["has_image"]) for r in rows] == [True, False, False, False]
    assert rows[0]["pixels"].shape == (8, 8, 3) and rows[0]["pixels"].dtype == np.uint8


def test_targets_let_humans_overrule_rules():
    frame = pd.DataFrame(
        {
            "pos_rule": [["a", "a/b"], ["a", "a/b"], []],
            "neg_rule": [[], [], []],
            "pos_human": [[], [], ["e"]],
            "neg_human": [["a/b"], [], []],
            "pos_oracle": [[], [], []],
            "neg_oracle": [[], [], []],
        }
    )
    assert targets_from_sources(frame) == [["a"], ["a", "a/b"], ["e"]]
    assert targets_from_sources(frame, ["human"]) == [[], [], ["e"]]


def _write_split(tmp_path, snapshot_rows):
    catalog = pd.DataFrame({c: [f"{c}-{i}" for i in range(6)] for c in CATALOG_COLUMNS})
    catalog["product_id"] = [f"p{i}" for i in range(6)]
    catalog.to_parquet(tmp_path / "catalog.parquet", row_group_size=2)
    (tmp_path / "snap").mkdir()
    pd.DataFrame(snapshot_rows).to_parquet(tmp_path / "snap" / "dev.parquet")
    return tmp_path / "catalog.parquet", tmp_path / "snap"


def test_read_split_keeps_listed_products_with_their_targets(ray_session, tmp_path):
    empty: list[str] = []
    catalog, snap = _write_split(
        tmp_path,
        {
            "product_id": ["p4", "p1", "p9", "p2"],  # p9 is not in the catalog
            "pos_rule": [["a"], ["a", "a/b"], ["a"], empty],
            "neg_rule": [empty] * 4,
            "pos_human": [empty, empty, empty, ["c"]],
            "neg_human": [empty, ["a/b"], empty, empty],
        },
    )
    frame = load_frame(read_split(catalog, snap, "dev"), unlabeled="keep")
    assert frame["product_id"].tolist() == ["p1", "p2", "p4"]
    assert frame["targets"].tolist() == [["a"], ["c"], ["a"]]
    assert frame["title"].tolist() == ["title-1", "title-2", "title-4"]
    rules_only = load_frame(read_split(catalog, snap, "dev", sources=["rule"]))
    assert rules_only["targets"].tolist() == [["a", "a/b"], ["a"]]


def test_read_split_rejects_a_snapshot_listing_a_product_twice(tmp_path):
    catalog, snap = _write_split(
        tmp_path, {"product_id": ["p1", "p1"], "pos_rule": [["a"], ["b"]]}
    )
    with pytest.raises(LabelStoreError, match=r"lists product 'p1' more than once"):
        read_split(catalog, snap, "dev")


def test_split_is_seeded_by_product_not_by_order():
    frame = pd.DataFrame({"product_id": [f"p{i}" for i in range(1000)]})
    train, valid = split_train_valid(frame, 0.2, seed=1)
    assert 150 < len(valid) < 250 and len(train) + len(valid) == 1000
    shuffled = frame.sample(frac=1, random_state=0)
    _, valid2 = split_train_valid(shuffled, 0.2, seed=1)
    assert set(valid2["product_id"]) == set(valid["product_id"])
    _, other = split_train_valid(frame, 0.2, seed=2)
    assert set(other["product_id"]) != set(valid["product_id"])
    with pytest.raises(ValueError, match=r"valid_fraction must be between 0 and 1"):
        split_train_valid(frame, 1.0, seed=0)
