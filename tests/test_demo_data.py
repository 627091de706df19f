"""Tests of the synthetic demo catalog (``raycat demo-data``)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from raycat.config import load_config
from raycat.demo import DemoDataError, DemoSummary, generate_catalog
from raycat.demo.products import (
    IMAGE_CORRUPT,
    IMAGE_MISSING,
    ProductParams,
    describe_product,
    product_rng,
)
from raycat.demo.world import build_world, normalize_width
from raycat.taxonomy import PATH_SEPARATOR, Taxonomy

SMALL = {"image_size": 32, "chunk_size": 64}


def _read(summary: DemoSummary) -> pd.DataFrame:
    return pd.read_parquet(summary.products_path)


def _image_bytes(summary: DemoSummary) -> dict[str, bytes]:
    root = summary.images_dir
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jpg"))
    }


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    out = tmp_path_factory.mktemp("demo") / "catalog"
    return generate_catalog(out, 400, seed=11, workers=1, **SMALL)


@pytest.fixture(scope="module")
def products(catalog: DemoSummary) -> pd.DataFrame:
    return _read(catalog)


# -- determinism --------------------------------------------------------------


def test_same_seed_gives_identical_files_whatever_the_workers(
    catalog: DemoSummary, tmp_path: Path
) -> None:
    again = generate_catalog(tmp_path / "again", 400, seed=11, workers=2, **SMALL)

    assert again.workers == 2
    assert again.products_path.read_bytes() == catalog.products_path.read_bytes()
    assert _image_bytes(again) == _image_bytes(catalog)
    assert again.rules_path.read_bytes() == catalog.rules_path.read_bytes()
    assert again.world_path.read_bytes() == catalog.world_path.read_bytes()


def test_another_seed_gives_another_catalog(
    catalog: DemoSummary, tmp_path: Path
) -> None:
    other = generate_catalog(tmp_path / "other", 400, seed=12, workers=1, **SMALL)

    assert other.products_path.read_bytes() != catalog.products_path.read_bytes()
    assert other.rules_path.read_text() != catalog.rules_path.read_text()
    first = "0000/P00000000.jpg"
    assert (other.images_dir / first).read_bytes() != (
        catalog.images_dir / first
    ).read_bytes()


def test_a_product_does_not_depend_on_the_chunking(
    catalog: DemoSummary, products: pd.DataFrame, tmp_path: Path
) -> None:
    rechunked = generate_catalog(
        tmp_path / "rechunked", 400, seed=11, workers=1, image_size=32, chunk_size=7
    )

    pd.testing.assert_frame_equal(_read(rechunked), products)
    assert _image_bytes(rechunked) == _image_bytes(catalog)


# -- the table and the taxonomy ------------------------------------------------


def test_table_has_the_documented_columns(products: pd.DataFrame) -> None:
    assert list(products.columns) == [
        "product_id",
        "title",
        "description",
        "colour",
        "image",
        "category_path",
        "image_category_path",
        "image_status",
    ]
    assert len(products) == 400
    assert products["product_id"].is_unique
    assert products["title"].str.len().min() > 0
    assert products["image"].str.fullmatch(r"\d{4}/P\d{8}\.jpg").all()


def test_every_category_path_builds_a_taxonomy(
    catalog: DemoSummary, products: pd.DataFrame
) -> None:
    paths = [p.split(PATH_SEPARATOR) for p in products["category_path"]]
    taxonomy = Taxonomy.from_paths(paths, source="demo products")

    # Default width (6, 4, 3): 102 categories, of which 72 leaves.
    world = json.loads(catalog.world_path.read_text())
    assert catalog.n_categories == len(world["categories"]) == 102
    assert catalog.n_leaves == 72
    assert taxonomy.max_depth == 3
    leaf_share = products["category_path"].str.count(PATH_SEPARATOR).eq(2).mean()
    assert 0.85 < leaf_share < 1.0  # mostly leaves, occasionally an inner node


def test_depth_and_width_are_configurable(tmp_path: Path) -> None:
    summary = generate_catalog(
        tmp_path / "wide", 50, seed=3, depth=2, width=(3, 5), workers=1, **SMALL
    )

    assert summary.n_categories == 3 + 15
    assert summary.n_leaves == 15
    paths = _read(summary)["category_path"].str.split(PATH_SEPARATOR)
    assert paths.map(len).max() == 2


def test_titles_carry_their_categorys_keywords(
    catalog: DemoSummary, products: pd.DataFrame
) -> None:
    world = json.loads(catalog.world_path.read_text())
    words = {c["path"]: set(c["words"]) for c in world["categories"]}

    def has_own_word(row: pd.Series) -> bool:
        tokens = set(row["title"].lower().split())
        return bool(tokens & words[row["category_path"]])

    # Every title draws one or two of its category's own keywords.
    assert products.apply(has_own_word, axis=1).all()


# -- images --------------------------------------------------------------------


def test_images_are_small_jpegs_in_sharded_folders(
    catalog: DemoSummary, products: pd.DataFrame
) -> None:
    ok = products[products["image_status"] == "ok"]
    for rel in ok["image"].head(20):
        with Image.open(catalog.images_dir / rel) as image:
            image.load()
            assert image.format == "JPEG"
            assert image.size == (32, 32)
    folders = [p for p in catalog.images_dir.iterdir()]
    assert all(p.is_dir() and re.fullmatch(r"\d{4}", p.name) for p in folders)


def test_missing_and_corrupt_images_when_forced(tmp_path: Path) -> None:
    summary = generate_catalog(
        tmp_path / "faulty",
        150,
        seed=4,
        workers=1,
        missing_image_fraction=0.2,
        corrupt_image_fraction=0.1,
        **SMALL,
    )
    products = _read(summary)

    missing = products[products["image_status"] == IMAGE_MISSING]
    corrupt = products[products["image_status"] == IMAGE_CORRUPT]
    assert len(missing) == summary.n_missing_images > 10
    assert len(corrupt) == summary.n_corrupt_images > 3
    assert summary.n_images == 150 - len(missing)
    for rel in missing["image"]:
        assert not (summary.images_dir / rel).exists()
    for rel in corrupt["image"]:
        path = summary.images_dir / rel
        assert path.is_file()
        with pytest.raises((OSError, SyntaxError)), Image.open(path) as image:
            image.load()


def test_default_fault_rates_on_a_large_sample() -> None:
    # The rates are decided before any pixel is drawn, so 20000 products are
    # cheap to check without writing images.
    world = build_world(0, normalize_width(None, 3))
    params = ProductParams(
        images_dir="unused",
        image_size=32,
        missing_image_fraction=0.01,
        corrupt_image_fraction=0.002,
        mismatch_fraction=0.05,
        missing_description_fraction=0.01,
    )
    rows = [describe_product(world, params, i, product_rng(0, i)) for i in range(20000)]

    def share(flags: list[bool]) -> float:
        return sum(flags) / len(flags)

    assert 0.007 < share([r.image_status == IMAGE_MISSING for r in rows]) < 0.013
    assert 0.001 < share([r.image_status == IMAGE_CORRUPT for r in rows]) < 0.0035
    assert 0.04 < share([r.image_category != r.category for r in rows]) < 0.06
    assert 0.007 < share([r.description is None for r in rows]) < 0.013
    inner = share([not world.categories[r.category].is_leaf for r in rows])
    assert 0.04 < inner < 0.06


def test_image_text_mismatches_are_recorded(
    catalog: DemoSummary, products: pd.DataFrame
) -> None:
    differs = products["image_category_path"] != products["category_path"]

    assert differs.sum() == catalog.n_mismatched_images
    assert 5 <= differs.sum() <= 40  # about 5% of 400
    for text_path, image_path in products.loc[
        differs, ["category_path", "image_category_path"]
    ].itertuples(index=False):
        # The image shows a category outside the product's own subtree.
        assert not image_path.startswith(text_path + PATH_SEPARATOR)
    known = set(products["category_path"]) | {
        c["path"] for c in json.loads(catalog.world_path.read_text())["categories"]
    }
    assert set(products["image_category_path"]) <= known


# -- the old rules -------------------------------------------------------------


def _rule_matcher(rule: dict):
    """A plain reading of one rule: word-boundary, case-insensitive keywords."""

    def words(ws: list[str]) -> re.Pattern[str] | None:
        if not ws:
            return None
        return re.compile(rf"\b(?:{'|'.join(map(re.escape, ws))})\b", re.IGNORECASE)

    any_words, none_words = words(rule["any"]), words(rule["none"])
    all_words = [words([w]) for w in rule["all"]]
    regex = re.compile(rule["regex"]) if rule["regex"] else None

    def fires(text: str) -> bool:
        return (
            any_words is not None
            and any_words.search(text) is not None
            and all(p.search(text) for p in all_words if p is not None)
            and (none_words is None or none_words.search(text) is None)
            and (regex is None or regex.search(text) is not None)
        )

    return fires


def test_rules_file_has_the_old_systems_format(
    catalog: DemoSummary, products: pd.DataFrame
) -> None:
    data = yaml.safe_load(catalog.rules_path.read_text())
    assert data["version"] == 1
    rules = data["rules"]
    assert len(rules) == catalog.n_rules > 0

    taxonomy = Taxonomy.from_paths(products["category_path"].str.split(PATH_SEPARATOR))
    for rule in rules:
        assert list(rule) == [
            "name",
            "category",
            "fields",
            "any",
            "all",
            "none",
            "regex",
        ]
        assert taxonomy.id_for_path(rule["category"].split(PATH_SEPARATOR))
        assert set(rule["fields"]) <= {"title", "description", "extra_text"}
        assert rule["any"] and all(isinstance(w, str) for w in rule["any"])
        assert isinstance(rule["all"], list) and isinstance(rule["none"], list)
        if rule["regex"] is not None:
            re.compile(rule["regex"])
    names = [r["name"] for r in rules]
    assert len(names) == len(set(names))


def test_rules_leave_categories_uncovered_and_mislead(catalog: DemoSummary) -> None:
    rules = yaml.safe_load(catalog.rules_path.read_text())["rules"]
    world = json.loads(catalog.world_path.read_text())
    leaves = [c for c in world["categories"] if c["path"].count(PATH_SEPARATOR) == 2]
    designed = set(world["uncovered_categories"])
    covered = {r["category"] for r in rules}

    assert sum(c["path"] in designed for c in leaves) == round(0.2 * len(leaves))
    for leaf in leaves:
        if leaf["n_products"]:
            assert (leaf["path"] in covered) != (leaf["path"] in designed)
    misleading = world["misleading_rule_keywords"]
    assert misleading
    assert all(m["also_in"] for m in misleading)


def test_rules_name_only_categories_the_catalog_holds(tmp_path: Path) -> None:
    # 30 products cannot fill 102 categories; rules for the empty ones would
    # name categories unknown to the catalog's taxonomy.
    summary = generate_catalog(tmp_path / "tiny", 30, seed=5, workers=1, **SMALL)
    products = _read(summary)
    taxonomy = Taxonomy.from_paths(products["category_path"].str.split(PATH_SEPARATOR))
    rules = yaml.safe_load(summary.rules_path.read_text())["rules"]
    world = json.loads(summary.world_path.read_text())

    assert world["rules_left_out_for_empty_categories"]
    assert rules
    for rule in rules:
        assert taxonomy.id_for_path(rule["category"].split(PATH_SEPARATOR))


def test_rules_are_useful_but_imperfect(
    catalog: DemoSummary, products: pd.DataFrame
) -> None:
    rules = yaml.safe_load(catalog.rules_path.read_text())["rules"]
    leaf_rules = [r for r in rules if r["category"].count(PATH_SEPARATOR) == 2]
    titles = products["title"].tolist()
    full = (products["title"] + " " + products["description"].fillna("")).tolist()
    truth = products["category_path"].tolist()

    hits = misses = wrong = 0
    for rule in leaf_rules:
        fires = _rule_matcher(rule)
        texts = titles if rule["fields"] == ["title"] else full
        for text, path in zip(texts, truth, strict=True):
            fired, right = fires(text), path == rule["category"]
            hits += fired and right
            misses += right and not fired
            wrong += fired and not right

    recall = hits / (hits + misses)
    precision = hits / (hits + wrong)
    assert 0.4 < recall < 0.95, recall  # partial keyword lists
    assert 0.5 < precision < 0.99, precision  # misleading keywords


# -- the config ------------------------------------------------------------------


def test_config_loads_and_points_at_the_files(catalog: DemoSummary) -> None:
    cfg = load_config(catalog.config_path)
    ds = cfg.dataset

    assert Path(ds.catalog.path) == catalog.products_path.resolve()
    assert Path(ds.catalog.image_root or "").is_dir()
    assert Path(ds.rules or "").is_file()
    assert Path(cfg.home) == (catalog.out_dir / "runs").resolve()
    assert ds.taxonomy.column == "category_path"
    assert ds.taxonomy.separator == PATH_SEPARATOR
    assert ds.taxonomy.drop_title_leaf is False
    assert ds.ground_truth.seed == 11
    columns = set(pd.read_parquet(ds.catalog.path).columns)
    mapped = ds.catalog.columns
    assert {mapped.id, mapped.title, mapped.description, mapped.image} <= columns
    assert mapped.colour in columns


def test_progress_is_logged_every_chunk(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="raycat.demo"):
        generate_catalog(
            tmp_path / "logged", 30, seed=1, workers=1, image_size=32, chunk_size=10
        )

    done = [re.search(r"(\d+/\d+) products \(", r.getMessage()) for r in caplog.records]
    assert [m.group(1) for m in done if m] == ["10/30", "20/30", "30/30"]


# -- bad input -----------------------------------------------------------------


def test_refuses_to_overwrite_an_earlier_catalog_unless_asked(
    tmp_path: Path,
) -> None:
    out = tmp_path / "twice"
    generate_catalog(out, 20, seed=1, workers=1, **SMALL)
    (out / "runs").mkdir()

    with pytest.raises(DemoDataError, match=r"already holds products\.parquet"):
        generate_catalog(out, 20, seed=1, workers=1, **SMALL)
    summary = generate_catalog(out, 30, seed=2, workers=1, overwrite=True, **SMALL)
    assert len(_read(summary)) == 30
    assert (out / "runs").is_dir()  # a run's home is never removed


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_products": 0}, "n_products must be between 1"),
        ({"seed": -1}, "seed must be between 0"),
        ({"image_size": 8}, "image_size must be between 16"),
        ({"workers": 0}, "workers must be between 1"),
        ({"depth": 2, "width": (3, 3, 3)}, "width has 3 entries .* but depth is 2"),
        ({"width": 0}, "every width must be at least 1"),
        ({"mismatch_fraction": 1.5}, "mismatch_fraction must be between 0 and 1"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, kwargs: dict, message: str) -> None:
    settings = {"n_products": 10, "workers": 1, **kwargs}
    n = settings.pop("n_products")

    with pytest.raises(DemoDataError, match=message):
        generate_catalog(tmp_path / "bad", n, **settings)
