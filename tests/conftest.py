"""Shared fixtures: tiny literal catalogs, the real Flipkart sample when present."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
FLIPKART = REPO.parent / "shared" / "data" / "flipkart-1050"
FLIPKART_CONFIG = REPO / "configs" / "flipkart-1050.yaml"


# Headless Chromium with nothing that reaches the network or writes outside
# its profile: the browser tests' common flags.
CHROMIUM_HEADLESS_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def flipkart_config() -> Path:
    if not (FLIPKART / "products.csv").is_file():
        pytest.skip(
            f"the Flipkart sample is not at {FLIPKART} (it lives in ../shared next to "
            "the repository); these tests need the real data"
        )
    return FLIPKART_CONFIG


TINY_PRODUCTS = [
    # id, title, description, path
    ("p1", "Steel wrist watch", "analog watch for men", "Watches > Wrist Watches"),
    ("p2", "Leather strap watch", "chronograph dial", "Watches > Wrist Watches"),
    ("p3", "Wall clock round", "quartz wall clock", "Watches > Clocks"),
    ("p4", "Ceramic coffee mug", "mug for tea and coffee", "Kitchen > Mugs"),
    ("p5", "Printed mug", "coffee mug gift", "Kitchen > Mugs"),
    ("p6", "Nonstick pan", "kitchen cookware pan", "Kitchen > Cookware > Pans"),
    ("p7", "Steel pressure cooker", "cookware for kitchen", "Kitchen > Cookware"),
    ("p8", "Frying pan", "pan with lid", "Kitchen > Cookware > Pans"),
]


def write_tiny_catalog(
    folder: Path, *, rules: list[dict] | None = None, **dataset_overrides
) -> Path:
    """A literal 8-product catalog as CSV with a config next to it."""
    folder.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(TINY_PRODUCTS, columns=["sku", "name", "body", "path"])
    df["img"] = [f"{i}.jpg" for i in df["sku"]]
    df.to_csv(folder / "products.csv", index=False)
    cfg = {
        "name": "tiny",
        "home": "run",
        "dataset": {
            "catalog": {
                "path": "products.csv",
                "columns": {
                    "id": "sku",
                    "title": "name",
                    "description": "body",
                    "image": "img",
                },
                "image_root": "images",
            },
            "taxonomy": {"source": "path_column", "column": "path", "separator": " > "},
            "ground_truth": {"source": "path_column", "test_fraction": 0.25, "seed": 3},
        },
    }
    if rules is not None:
        (folder / "rules.yaml").write_text(
            yaml.safe_dump({"version": 1, "rules": rules})
        )
        cfg["dataset"]["rules"] = "rules.yaml"
    for key, value in dataset_overrides.items():
        cfg["dataset"][key] = value
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    rules = [
        {"name": "watch", "category": "Watches > Wrist Watches", "any": ["watch"]},
        {"name": "mug", "category": "Kitchen > Mugs", "any": ["mug"]},
        {"name": "pan", "category": "Kitchen > Cookware > Pans", "any": ["pan"]},
    ]
    return write_tiny_catalog(tmp_path / "tiny", rules=rules)


@pytest.fixture(scope="session")
def ray_session():
    """One small local Ray instance for the whole test session."""
    import ray
    from ray.data import DataContext

    if not ray.is_initialized():
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=300 * 1024 * 1024,
            log_to_driver=False,
            configure_logging=False,
        )
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    yield ray
    ray.shutdown()
