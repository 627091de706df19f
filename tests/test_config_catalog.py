from pathlib import Path

import pandas as pd
import pytest
import yaml

from raycat.catalog import build_taxonomy, load_catalog, parse_path
from raycat.config import load_config, parse_config
from raycat.errors import CatalogError, ConfigError, TaxonomyError
from raycat.groundtruth import ground_truth_for, split_test
from raycat.taxonomy import Taxonomy

from .conftest import write_tiny_catalog


def _minimal(**dataset) -> dict:
    base = {
        "catalog": {"path": "p.parquet"},
        "taxonomy": {"source": "path_column", "column": "path"},
    }
    base.update(dataset)
    return {"dataset": base}


def test_paths_resolve_against_the_config_folder(tmp_path):
    cfg = parse_config(_minimal(), base_dir=tmp_path)
    assert cfg.dataset.catalog.path == str(tmp_path / "p.parquet")
    assert cfg.dataset.catalog.format == "parquet"
    assert cfg.dataset.ground_truth.column == "path"
    uri = parse_config(_minimal(catalog={"path": "s3://bucket/p.csv"}))
    assert uri.dataset.catalog.path == "s3://bucket/p.csv"
    assert uri.dataset.catalog.format == "csv"


def test_unknown_setting_is_named():
    data = _minimal()
    data["dataset"]["catalog"]["colums"] = {}
    with pytest.raises(ConfigError, match=r"dataset.catalog.colums: unknown setting"):
        parse_config(data, source="x.yaml")


def test_missing_setting_is_named():
    with pytest.raises(ConfigError, match=r"dataset.taxonomy: required setting"):
        parse_config({"dataset": {"catalog": {"path": "a.csv"}}})


def test_bad_values_are_named():
    data = _minimal(ground_truth={"test_fraction": 1.5})
    with pytest.raises(
        ConfigError,
        match=r"dataset.ground_truth.test_fraction: Input should be less than 1 "
        r"\(got 1.5\)",
    ):
        parse_config(data)
    data = _minimal(taxonomy={"source": "path_column"})
    with pytest.raises(ConfigError, match=r"no column is set; set dataset.taxonomy"):
        parse_config(data)
    data = _minimal(catalog={"path": "catalog.xlsx"})
    with pytest.raises(ConfigError, match=r"cannot infer the format of 'catalog.xlsx'"):
        parse_config(data)


def test_missing_config_file_says_how_to_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"not found; pass the path of a YAML file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: [1, 2\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML"):
        load_config(bad)


def test_parse_path_forms():
    assert parse_path('["A >> B >> C"]', " >> ") == ["A", "B", "C"]
    assert parse_path("A > B", " > ") == ["A", "B"]
    assert parse_path(["A", "B"], " > ") == ["A", "B"]
    assert parse_path(None, " > ") is None
    assert parse_path("", " > ") is None


def test_tiny_catalog_loads_into_canonical_columns(tmp_path):
    cfg = load_config(write_tiny_catalog(tmp_path))
    cat = load_catalog(cfg)
    df = cat.products
    assert list(df.columns) == [
        "product_id",
        "title",
        "description",
        "extra_text",
        "colour",
        "image",
        "category_path",
    ]
    assert df["product_id"].tolist()[:2] == ["p1", "p2"]
    assert df["image"][0] == str(tmp_path / "images" / "p1.jpg")
    assert df["category_path"][5] == ["Kitchen", "Cookware", "Pans"]
    tax = build_taxonomy(cfg, cat)
    assert tax.level_sizes() == {1: 2, 2: 4, 3: 1}


def test_title_leaf_is_dropped_and_depth_capped(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    pd.DataFrame(
        {
            "id": ["1", "2"],
            "title": ["Elegance Polyester Door Curtain", "Blue mug"],
            "path": [
                '["Home >> Curtains >> Door >> Elegance Polyester Do..."]',
                '["Kitchen >> Mugs"]',
            ],
        }
    ).to_csv(folder / "p.csv", index=False)
    data = _minimal(
        catalog={"path": "p.csv", "columns": {"description": None, "image": None}},
        taxonomy={"column": "path", "separator": " >> ", "max_depth": 2},
    )
    cfg = parse_config(data, base_dir=folder)
    paths = load_catalog(cfg).products["category_path"].tolist()
    assert paths == [["Home", "Curtains"], ["Kitchen", "Mugs"]]
    cfg.dataset.taxonomy.max_depth = 0
    paths = load_catalog(cfg).products["category_path"].tolist()
    assert paths[0] == ["Home", "Curtains", "Door"]


def test_catalog_errors_name_the_setting_and_rows(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    pd.DataFrame({"id": ["1", "1"], "title": ["a", "b"], "path": ["A", "B"]}).to_csv(
        folder / "p.csv", index=False
    )
    data = _minimal(
        catalog={"path": "p.csv", "columns": {"description": None, "image": None}}
    )
    cfg = parse_config(data, base_dir=folder)
    with pytest.raises(CatalogError, match=r"share a product id; e.g. '1' in rows"):
        load_catalog(cfg)
    data["dataset"]["catalog"]["columns"]["title"] = "name"
    cfg = parse_config(data, base_dir=folder)
    with pytest.raises(CatalogError, match=r"columns.title names column 'name'"):
        load_catalog(cfg)
    cfg = parse_config(_minimal(catalog={"path": "missing.csv"}), base_dir=folder)
    with pytest.raises(CatalogError, match=r"catalog table .* not found"):
        load_catalog(cfg)


def test_taxonomy_from_a_parent_child_table(tmp_path):
    folder = tmp_path / "t"
    write_tiny_catalog(folder)
    pd.DataFrame(
        {
            "parent": ["", "Watches", "", "Kitchen"],
            "child": ["Watches", "Clocks", "Kitchen", "Mugs"],
        }
    ).to_csv(folder / "tree.csv", index=False)
    pd.DataFrame(
        {
            "product_id": ["p3", "p4", "p5"],
            "category": ["Watches > Clocks", "Kitchen > Mugs", "kitchen/mugs"],
        }
    ).to_csv(folder / "gt.csv", index=False)
    data = yaml.safe_load((folder / "config.yaml").read_text())
    data["dataset"]["taxonomy"] = {"source": "table", "table": "tree.csv"}
    data["dataset"]["ground_truth"] = {
        "source": "table",
        "table": "gt.csv",
        "test_size": 1,
    }
    cfg = parse_config(data, base_dir=folder)
    cat = load_catalog(cfg)
    tax = build_taxonomy(cfg, cat)
    assert tax.ids == ["kitchen", "watches", "kitchen/mugs", "watches/clocks"]
    gt = ground_truth_for(cfg, cat, tax)
    assert gt.labels == {
        "p3": ["watches/clocks"],
        "p4": ["kitchen/mugs"],
        "p5": ["kitchen/mugs"],
    }
    assert len(gt.test_ids) == 1 and len(gt.pool_ids) == 7

    pd.DataFrame({"product_id": ["p3"], "category": ["Watches > Nope"]}).to_csv(
        folder / "gt.csv", index=False
    )
    with pytest.raises(TaxonomyError, match=r"gt.csv, row 0: unknown category"):
        ground_truth_for(cfg, cat, tax)


def test_split_is_stratified_seeded_and_exact():
    tax = Taxonomy.from_paths([["A", "x"], ["B", "y"]])
    labels = {f"a{i}": ["a/x"] for i in range(30)} | {f"b{i}": ["b"] for i in range(10)}
    ids = [*sorted(labels), "nolabel"]
    test, pool = split_test(
        labels, ids, tax, test_fraction=0.25, test_size=None, seed=1
    )
    assert len(test) == 10
    assert sum(t.startswith("a") for t in test) == 8  # 30 * 0.25 rounded
    assert "nolabel" in pool and not set(test) & set(pool)
    again, _ = split_test(labels, ids, tax, test_fraction=0.25, test_size=None, seed=1)
    other, _ = split_test(labels, ids, tax, test_fraction=0.25, test_size=None, seed=2)
    assert again == test and other != test
    with pytest.raises(ConfigError, match=r"test_size is 99, but only 40 products"):
        split_test(labels, ids, tax, test_fraction=None, test_size=99, seed=1)


def test_flipkart_config_loads(flipkart_config: Path):
    cfg = load_config(flipkart_config)
    cat = load_catalog(cfg)
    assert len(cat) == 1050
    tax = build_taxonomy(cfg, cat)
    assert len(tax.roots) == 7 and tax.max_depth == 3
    gt = ground_truth_for(cfg, cat, tax)
    assert len(gt.test_ids) == 210
    tops = pd.Series([tax.top_level(gt.labels[p][0]) for p in gt.test_ids])
    assert tops.value_counts().tolist() == [30] * 7
