"""``raycat report``: a fake run's home with every input, rendered to HTML and
opened in headless Chromium; and a home with nothing but its taxonomy."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from raycat.labels import LabelEvent, Source, open_label_store
from raycat.report import ReportError, load_inputs, write_report
from raycat.taxonomy import Taxonomy
from tests.conftest import CHROMIUM_HEADLESS_ARGS

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
PATHS = [
    ["Watches", "Wrist Watches"],
    ["Watches", "Clocks"],
    ["Kitchen", "Mugs"],
    ["Kitchen", "Cookware", "Pans"],
]


def _metrics(seed: int, categories: list[str], taxonomy: Taxonomy) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    per_category = [
        {
            "category": c,
            "depth": taxonomy.depth(c),
            "support": int(rng.integers(1, 20)),
            "precision": float(rng.random()),
            "recall": float(rng.random()),
            "f1": float(rng.random()),
            "average_precision": float(rng.random()),
        }
        for c in categories
    ]
    split = {m: float(rng.random()) for m in ("micro_f1", "macro_f1")}
    split["hierarchical_f1"] = float(rng.random())
    return {"valid": dict(split), "test": split | {"per_category": per_category}}


def make_run(home: Path) -> Path:
    """A run's home with every file the report reads, written by hand."""
    taxonomy = Taxonomy.from_paths(PATHS)
    home.mkdir(parents=True)
    taxonomy.save(home / "taxonomy.json")
    metrics = home / "metrics"
    metrics.mkdir()
    ids = taxonomy.ids
    names = ["random", "tfidf_linear", "text_cnn"]

    train_pred = {
        "pipeline": "train-pred",
        "home": str(home),
        "components": [
            {
                "component": n,
                "kind": n,
                "ok": True,
                "metrics": _metrics(i, ids, taxonomy),
            }
            for i, n in enumerate(names)
        ]
        + [{"component": "image", "kind": "image", "ok": False, "error": "OOM"}],
    }
    (metrics / "train-pred.json").write_text(json.dumps(train_pred))

    tune = {
        "pipeline": "tune",
        "components": [
            {
                "component": n,
                "metric": "val_hierarchical_f1",
                "mode": "max",
                "trials": 6,
                "trials_errored": 0,
                "best_metric": 0.7,
                "ok": True,
                "history": [
                    {"trial": f"t{t}", "val_hierarchical_f1": 0.4 + 0.05 * t}
                    for t in range(6)
                ],
                "final": {
                    "ok": True,
                    "kind": n,
                    "metrics": _metrics(10 + i, ids, taxonomy),
                },
            }
            for i, n in enumerate(names)
        ],
    }
    (metrics / "tune.json").write_text(json.dumps(tune))

    models = {
        n: {"kind": n, **_metrics(20 + i, ids, taxonomy)}
        for i, n in enumerate([*names, "weighted_ensemble", "stacked_ensemble"])
    }
    ensemble = {
        "pipeline": "ensemble",
        "selection": {"metric": "hierarchical_f1", "chosen": "stacked_ensemble"},
        "models": models,
    }
    (metrics / "ensemble.json").write_text(json.dumps(ensemble))
    contributions = {
        "overall": [
            {
                "ensemble": e,
                "kind": e.split("_")[0],
                "component": n,
                "category": None,
                "weight": 1 / len(names),
                "delta_micro_f1": -0.01 * i,
                "delta_macro_f1": 0.01,
                "delta_hierarchical_f1": -0.02 * i + 0.01,
            }
            for e in ("weighted_ensemble", "stacked_ensemble")
            for i, n in enumerate(names)
        ],
        "per_category": {},
    }
    (metrics / "contributions.json").write_text(json.dumps(contributions))

    rng = np.random.default_rng(0)
    sim = [
        {
            "iteration": it,
            "seed": seed,
            "model": model,
            "labels_used": 100 + 50 * it,
            "test_micro_f1": 0.3 + 0.05 * it + 0.02 * rng.random(),
            "test_macro_f1": 0.2 + 0.04 * it + 0.02 * rng.random(),
            "test_hierarchical_f1": 0.4 + 0.05 * it + 0.02 * rng.random(),
        }
        for it in range(4)
        for seed in range(3)
        for model in ("model_R", "model_A", "random")
    ]
    pd.DataFrame(sim).to_parquet(metrics / "simulation.parquet")
    surprises = [
        {
            "iteration": it,
            "strategy": s,
            "labels": 40,
            "surprises": 3 + it + k,
            "mean_cross_entropy": 0.5 + 0.1 * k,
            "summed_cross_entropy": 40 * (0.5 + 0.1 * k),
            "surprise_cross_entropy": 5.0 + k,
        }
        for it in range(1, 4)
        for k, s in enumerate(("random", "disagreement", "uncertainty"))
    ]
    pd.DataFrame(surprises).to_parquet(metrics / "surprises.parquet")

    with open_label_store(home, taxonomy) as store:
        store.write(
            [
                LabelEvent("p1", "watches/clocks", 1, Source.RULE, labeler="r1"),
                LabelEvent("p2", "kitchen/mugs", 1, Source.GROUND_TRUTH),
                LabelEvent("p3", "kitchen/mugs", 0, Source.HUMAN, labeler="ann"),
                LabelEvent("p4", "kitchen/cookware/pans", 1, Source.ORACLE),
            ]
        )
    return home


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of a run with every input, rendered once for the module."""
    root = tmp_path_factory.mktemp("report")
    return write_report(make_run(root / "runs" / "shop"), root / "report.html")


def _img_sources(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


def test_report_has_every_section_and_its_plots(full_report: Path) -> None:
    page = full_report.read_text()

    # Every plot is an embedded PNG: the page needs no network and no file.
    sources = _img_sources(page)
    assert len(sources) == 7  # models, contributions, categories, tuning, AL, ...
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in page and "https://" not in page
    assert "not run yet" not in page
    assert "could not be drawn" not in page

    # The tables carry the inputs.
    assert "stacked_ensemble" in page and "weighted_ensemble" in page
    assert 'class="current"' in page
    assert "OOM" in page  # a failed component shows its error
    assert "Kitchen &gt; Cookware &gt; Pans" in page  # category paths
    for strategy in ("random", "disagreement", "uncertainty"):
        assert strategy in page
    for model in ("model_R", "model_A"):
        assert model in page
    for source in ("rule", "ground_truth", "human", "oracle"):
        assert f"<td>{source}</td>" in page


def test_per_category_table_lists_the_worst_first(full_report: Path) -> None:
    page = full_report.read_text()
    section = page.split('id="categories"', 1)[1].split("</section>", 1)[0]
    table = section.split("<tbody>", 1)[1]
    f1_column = re.findall(
        r"<tr>(?:<td[^>]*>[^<]*</td>){5}<td[^>]*>([0-9.]+)</td>", table
    )
    values = [float(v) for v in f1_column]
    assert len(values) == len(Taxonomy.from_paths(PATHS))
    assert values == sorted(values)


def test_a_fresh_run_renders_with_not_run_yet_sections(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    home.mkdir()
    Taxonomy.from_paths(PATHS).save(home / "taxonomy.json")

    page = write_report(home).read_text()

    assert _img_sources(page) == []
    for command in (
        "raycat train-pred CONFIG",
        "raycat tune CONFIG",
        "raycat ensemble CONFIG",
        "raycat simulate CONFIG",
        "raycat retrain CONFIG",
        "raycat prepare CONFIG",
    ):
        assert f"<code>{command}</code>" in page, command
    assert page.count("not run yet") >= 7
    assert "could not be drawn" not in page
    # Reading the run must not create anything in it.
    assert sorted(p.name for p in home.iterdir()) == ["report.html", "taxonomy.json"]


def test_a_half_written_input_is_reported_not_fatal(tmp_path: Path) -> None:
    home = make_run(tmp_path / "shop")
    (home / "metrics" / "contributions.json").write_text('{"overall": [')
    (home / "metrics" / "ensemble.json").unlink()

    page = write_report(home).read_text()

    assert "metrics/contributions.json could not be read" in page
    assert "could not be drawn" not in page


def test_a_simulations_surprises_are_summed_over_seeds(tmp_path: Path) -> None:
    home = tmp_path / "sim"
    home.mkdir()
    Taxonomy.from_paths(PATHS).save(home / "taxonomy.json")
    per_seed = {
        0: {"random": (4, 4, 1, 2.0, 1.5), "uncertainty": (2, 0, 0, 0.0, 0.0)},
        1: {"random": (4, 2, 1, 1.0, 0.5), "uncertainty": (2, 0, 0, 0.0, 0.0)},
    }
    for seed, rows in per_seed.items():
        folder = home / f"simulation/seed-{seed}/active/iterations/iter-001"
        folder.mkdir(parents=True)
        frame = pd.DataFrame.from_dict(
            rows,
            orient="index",
            columns=[
                "queued",
                "labels",
                "surprises",
                "cross_entropy_sum",
                "surprise_cross_entropy_sum",
            ],
        ).rename_axis("strategy")
        frame.to_parquet(folder / "surprises.parquet")

    surprises = load_inputs(home).surprises.set_index("strategy")

    random = surprises.loc["random"]
    assert random["iteration"] == 1
    assert (random["queued"], random["labels"], random["surprises"]) == (8, 6, 2)
    assert random["surprise_rate"] == pytest.approx(2 / 6)
    assert random["mean_cross_entropy"] == pytest.approx(3.0 / 6)
    assert random["surprise_cross_entropy_per_label"] == pytest.approx(2.0 / 6)
    assert surprises.loc["uncertainty", "labels"] == 0
    assert np.isnan(surprises.loc["uncertainty", "surprise_rate"])


def test_report_of_a_missing_folder_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="does not exist; pass a run's home"):
        load_inputs(tmp_path / "nope")


def test_report_command(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from raycat.cli.report import register

    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps `report` a subcommand
        pass

    home = tmp_path / "shop"
    home.mkdir()
    Taxonomy.from_paths(PATHS).save(home / "taxonomy.json")
    out = tmp_path / "r" / "shop.html"
    result = CliRunner().invoke(app, ["report", str(home), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "report:" in result.output


def _chromium() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_opens_in_headless_chromium(full_report: Path, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip(
            "no Chromium to open the report in (Debian: `apt-get install -y "
            "chromium`); the HTML checks above still ran"
        )
    shot = tmp_path / "report.png"

    subprocess.run(
        [
            browser,
            *CHROMIUM_HEADLESS_ARGS,
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,3000",
            full_report.as_uri(),
        ],
        capture_output=True,
        timeout=180,
        check=False,
    )

    assert shot.is_file(), "Chromium wrote no screenshot"
    from PIL import Image

    with Image.open(shot) as img:
        assert img.format == "PNG"
        assert img.size == (1200, 3000)
        pixels = np.asarray(img.convert("L"), dtype=float)
    # Not blank: the page draws text, tables and plots over its white page.
    assert pixels.std() > 10
    assert (pixels < 128).mean() > 0.01
