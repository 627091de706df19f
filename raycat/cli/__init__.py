"""The ``raycat`` command line.

Every command takes a pipeline config; those that report accept ``--json`` and
then print exactly one JSON document on stdout (logs go to stderr).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from raycat.errors import RaycatError

app = typer.Typer(
    name="raycat",
    help="Categorize a product catalog into a hierarchical taxonomy, on Ray.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
catalog_app = typer.Typer(help="Inspect a catalog.", no_args_is_help=True)
rules_app = typer.Typer(help="Inspect the old system's rules.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
app.add_typer(rules_app, name="rules")

out = Console()
err = Console(stderr=True)

ConfigArg = Annotated[Path, typer.Argument(help="Pipeline config (YAML).")]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout.")
]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=err, show_path=False, rich_tracebacks=False)],
        force=True,
    )
    for noisy in ("ray", "urllib3", "filelock", "elastic_transport"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# The real stdout while a --json command runs (sys.stdout is stderr then).
_json_out = None


@app.callback()
def _main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug logs.")
    ] = False,
) -> None:
    _setup_logging(verbose)
    if "--json" in sys.argv:
        # stdout must hold the JSON document alone: keep Ray's worker output
        # out of it, and send whatever else Ray prints (raylet warnings come
        # through even then) to stderr until the document is written.
        os.environ["RAYCAT_QUIET"] = "1"
        global _json_out
        _json_out = sys.stdout
        sys.stdout = sys.stderr


def _names(components: str | None) -> list[str] | None:
    """A --components value ("a, b") as a list of names, or None."""
    return [c.strip() for c in components.split(",")] if components else None


def _emit_json(data: object) -> None:
    (_json_out or sys.stdout).write(json.dumps(data, indent=2, default=str) + "\n")


@catalog_app.command("check")
def catalog_check(config: ConfigArg, as_json: JsonOpt = False) -> None:
    """Validate a pipeline config and its catalog: products, images, taxonomy
    size per level, label coverage per source, and every problem found."""
    from raycat.checks import check_catalog
    from raycat.config import load_config

    report = check_catalog(load_config(config))
    if as_json:
        _emit_json(report)
    else:
        _print_check(report)
    if not report["ok"]:
        raise typer.Exit(1)


def _print_check(r: dict) -> None:
    t = Table(title=f"catalog check: {r['config']}", show_header=False)
    t.add_row("products", str(r["products"]))
    img = r["images"]
    t.add_row(
        "images",
        f"{img['present']} present, {img['missing']} missing, "
        f"{img['unreadable']} unreadable",
    )
    tax = r["taxonomy"]
    levels = ", ".join(f"level {k}: {v}" for k, v in tax["per_level"].items())
    t.add_row("taxonomy", f"{tax['categories']} categories ({levels})")
    for source, c in r["label_coverage"].items():
        extra = ", ".join(
            f"{k} {v}" for k, v in c.items() if k not in ("products", "share")
        )
        t.add_row(
            f"labels: {source}",
            f"{c['products']} products ({c['share']:.1%})"
            + (f"; {extra}" if extra else ""),
        )
    out.print(t)
    for p in r["problems"]:
        style = "red" if p["level"] == "error" else "yellow"
        out.print(f"[{style}]{p['level']}[/]: {p['message']}")
    if not r["problems"]:
        out.print("[green]no problems found[/]")


@rules_app.command("report")
def rules_report_cmd(config: ConfigArg, as_json: JsonOpt = False) -> None:
    """For each old-system rule and each category: products labeled, overlaps
    and conflicts between rules, precision and recall against ground truth."""
    from raycat.config import load_config
    from raycat.errors import ConfigError
    from raycat.rules import print_rules_report, rules_report
    from raycat.run import load_run

    cfg = load_config(config)
    if not cfg.dataset.rules:
        raise ConfigError(
            f"{config}: dataset.rules is not set; name the old system's rules file"
        )
    run = load_run(cfg)
    gt = run.ground_truth.closed(run.taxonomy) or None
    report = rules_report(run.rules, run.catalog.products, run.taxonomy, gt)
    if as_json:
        _emit_json(report)
    else:
        print_rules_report(report, out)


@app.command("demo-data")
def demo_data(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the catalog into.")],
    products: Annotated[int, typer.Option("--products", "-n", min=10)] = 2000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    depth: Annotated[int, typer.Option("--depth", min=1, max=6)] = 3,
    image_size: Annotated[int, typer.Option("--image-size", min=16)] = 64,
    workers: Annotated[int | None, typer.Option("--workers")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier demo catalog.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a synthetic catalog (products, images, ground truth, rules) and a
    pipeline config for it (OUT_DIR/config.yaml)."""
    from dataclasses import asdict

    from raycat.demo import generate_catalog

    summary = generate_catalog(
        out_dir,
        products,
        seed=seed,
        depth=depth,
        image_size=image_size,
        workers=workers,
        overwrite=overwrite,
    )
    data = asdict(summary)
    if as_json:
        _emit_json(data)
    else:
        for k, v in data.items():
            out.print(f"{k}: {v}")
        out.print(f"next: raycat catalog check {Path(out_dir) / 'config.yaml'}")


@app.command("prepare")
def prepare(
    config: ConfigArg,
    iteration: Annotated[int, typer.Option(help="Snapshot iteration number.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Lay out the run's home, store rule and ground-truth labels, and dump the
    dev and test snapshots."""
    from raycat.config import load_config
    from raycat.run import prepare_run

    run, snap = prepare_run(load_config(config), iteration=iteration)
    with run.open_store() as store:
        counts = store.counts()
    data = {"home": str(run.paths.home), "snapshot": str(snap), "labels": counts}
    if as_json:
        _emit_json(data)
    else:
        out.print(f"home: {data['home']}\nsnapshot: {snap}")
        for source, c in counts.items():
            out.print(f"labels from {source}: {c}")


@app.command("train-pred")
def train_pred(
    config: ConfigArg,
    components: Annotated[
        str | None,
        typer.Option("--components", "-c", help="Comma-separated component names."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train each configured component once on its own split, evaluate it on
    validation and test, and save models, predictions and metrics."""
    from raycat.config import load_config
    from raycat.pipelines.train_pred import headline, run_train_pred

    names = _names(components)
    summary = run_train_pred(load_config(config), names)
    rows = headline(summary)
    if as_json:
        _emit_json(
            {
                "home": summary["home"],
                "components": rows,
                "details": summary["components"],
            }
        )
    else:
        _print_rows(f"train-pred: test metrics ({summary['n_test']} products)", rows)
    if any("error" in r for r in rows):
        raise typer.Exit(1)


def _print_rows(title: str, rows: list[dict]) -> None:
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*(str(r.get(c, "")) for c in columns))
    out.print(t)


@app.command("tune")
def tune_cmd(
    config: ConfigArg,
    components: Annotated[
        str | None,
        typer.Option("--components", "-c", help="Comma-separated component names."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Finish an interrupted search.")
    ] = False,
    trials: Annotated[
        int | None, typer.Option("--trials", min=1, help="Trials per component.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Tune every component with Optuna on Ray Tune, all in parallel; refit and
    evaluate the best of each, and save its hyperparameters as JSON."""
    from raycat.config import load_config
    from raycat.tuning.runner import run_tune, summary_rows

    cfg = load_config(config)
    if trials is not None:
        cfg.tuning.trials = trials
    names = _names(components)
    summary = run_tune(cfg, names, resume=resume)
    rows = summary_rows(summary)
    if as_json:
        _emit_json(
            {
                "home": summary["home"],
                "wall_s": summary["wall_s"],
                "components": rows,
                "details": summary["components"],
            }
        )
    else:
        _print_rows(f"tune: best of each component ({summary['wall_s']} s)", rows)
    if any("error" in r for r in rows):
        raise typer.Exit(1)


@app.command("score")
def score_cmd(
    config: ConfigArg,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="A model name under models/ or a folder; "
            "default: the run's current model.",
        ),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Output folder (Parquet).")
    ] = None,
    gpus_per_actor: Annotated[float, typer.Option("--gpus-per-actor", min=0)] = 0.0,
    block_mib: Annotated[
        int,
        typer.Option(
            "--block-mib",
            min=1,
            help="Ray Data block size in MiB: each reader, scorer and writer "
            "holds a few blocks, so memory follows it, not the pool size.",
        ),
    ] = 16,
    as_json: JsonOpt = False,
) -> None:
    """Batch-score the unlabeled pool with Ray Data: the current model's,
    text and image probabilities, entropy and image/text disagreement."""
    from raycat.config import load_config
    from raycat.pipelines.score import score_pool

    summary = score_pool(
        load_config(config),
        model=model,
        out_dir=out_dir,
        gpus_per_actor=gpus_per_actor,
        block_mib=block_mib,
    )
    if as_json:
        _emit_json(summary)
    else:
        out.print(f"scored {summary['products']} products -> {summary['scores']}")


@app.command("retrain")
def retrain_cmd(
    config: ConfigArg,
    no_update: Annotated[
        bool,
        typer.Option(
            "--no-update",
            help="Run everything, publish nothing: no new current model, no queue.",
        ),
    ] = False,
    components: Annotated[
        str | None,
        typer.Option("--components", "-c", help="Comma-separated component names."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """One active-learning iteration: retrain on every label so far, compare
    model-R and model-A, score the pool and queue the next page."""
    from raycat.config import load_config
    from raycat.pipelines.retrain import run_retrain

    names = _names(components)
    summary = run_retrain(load_config(config), no_update=no_update, components=names)
    if as_json:
        _emit_json(summary)
        return
    _print_rows(f"retrain: iteration {summary['iteration']}", summary["components"])
    for name, c in summary["model_R_vs_A"].items():
        out.print(
            f"{name}: test {c['test']}; previous predictions on new random "
            f"labels {c['previous_on_new_random_labels']}"
        )
    out.print(f"page: {summary['page']}")
    out.print("published" if summary["published"] else "--no-update: nothing published")


@app.command("simulate")
def simulate_cmd(
    config: ConfigArg,
    iterations: Annotated[int, typer.Option("--iterations", min=1)] = 3,
    labels: Annotated[int | None, typer.Option("--labels", min=1)] = None,
    seeds: Annotated[int, typer.Option("--seeds", min=1)] = 3,
    noise: Annotated[float, typer.Option("--noise", min=0.0, max=1.0)] = 0.0,
    components: Annotated[
        str | None,
        typer.Option(
            "--components",
            "-c",
            help="Components retrained each "
            "iteration (default: one linear text model).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Whole active-learning runs with an oracle answering from the ground
    truth: learning curves of model-R, model-A and a random baseline."""
    from raycat.config import load_config
    from raycat.pipelines.simulate import default_components, run_simulation

    cfg = load_config(config)
    names = _names(components) or default_components(cfg)
    result = run_simulation(
        cfg,
        iterations=iterations,
        labels=labels,
        seeds=seeds,
        noise=noise,
        components=names,
    )
    if as_json:
        _emit_json({k: v for k, v in result.items() if k != "rows"})
        return
    _print_rows("simulate: mean learning curves over seeds", result["curves"])
    out.print(f"table: {result['table']}")


@app.command("quickstart")
def quickstart(
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Run on this config instead of sample data."),
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Where the sample catalog and run go.")
    ] = Path("runs/quickstart"),
    products: Annotated[int, typer.Option("--products", min=50)] = 3000,
    as_json: JsonOpt = False,
) -> None:
    """The whole pipeline end to end: sample data (unless --config), catalog
    check, rules report, train-pred, a short hypertune, ensembles, two
    simulated active-learning iterations and the HTML report."""
    from raycat.pipelines.quickstart import run_quickstart

    result = run_quickstart(config, out_dir=out_dir, products=products)
    if as_json:
        _emit_json(result)
        return
    _print_rows("train-pred: test metrics per component", result["train_pred"])
    _print_rows("hypertune: best of each component", result["tune"])
    _print_rows(
        "active learning: test hierarchical F1",
        [
            {
                **row,
                "model_R": round(row["model_R"]["hierarchical_f1"], 4),
                "model_A": round(row["model_A"]["hierarchical_f1"], 4),
            }
            for row in result["active_learning"]
        ],
    )
    out.print(f"current model: {result['ensemble']['chosen']}")
    out.print(f"run home: {result['home']}  ({result['wall_s']} s)")
    out.print(f"[bold]report:[/] {result['report']}")
    out.print(
        f"[bold]labeling app:[/] {result['serve']}  (then open http://127.0.0.1:8000/)"
    )


def _register_module_commands() -> None:
    """Commands that live in modules of their own."""
    from raycat.cli import ensemble, report, serve

    for module in (ensemble, report, serve):
        module.register(app)


_register_module_commands()


def main() -> None:
    """Console-script entry point: domain errors become one clear line and exit
    status 2, not a traceback."""
    try:
        app()
    except RaycatError as e:
        err.print(f"[red]error:[/] {e}", highlight=False)
        sys.exit(2)
