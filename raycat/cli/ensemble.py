"""The ``raycat ensemble`` command.

No ``from __future__ import annotations`` here: typer reads the command's
annotations, and ``ConfigArg`` / ``JsonOpt`` are local to :func:`register`.
"""

import typer


def register(app: typer.Typer) -> None:
    """Add the ``ensemble`` command to the raycat CLI."""
    from raycat.cli import ConfigArg, JsonOpt

    @app.command("ensemble")
    def ensemble(config: ConfigArg, as_json: JsonOpt = False) -> None:
        """Cross-fit the trained components, fit the weighted and stacked
        ensembles, compare every model on held-out data, and mark the best as
        the run's current model."""
        from raycat.cli import _emit_json, _print_rows, out
        from raycat.config import load_config
        from raycat.pipelines.ensemble import headline, run_ensemble

        summary = run_ensemble(load_config(config))
        rows = headline(summary)
        if as_json:
            _emit_json(
                {
                    "home": summary["home"],
                    "current": summary["current"],
                    "models": rows,
                    "contributions": summary["contributions"],
                    "oof_errors": summary["oof"]["errors"],
                    "wall_s": summary["wall_s"],
                }
            )
            return
        _print_rows(
            f"ensemble: models on meta-valid and test ({summary['n_test']} "
            "products); * marks the current model",
            rows,
        )
        _print_rows("ensemble: contributions", summary["contributions"])
        current = summary["current"]
        out.print(
            f"current model: {current['model']} ({current['metric']} "
            f"{current['value']:.4f}) -> {current['path']}"
        )
        if summary["oof"]["errors"]:
            out.print(f"left out after failures: {summary['oof']['errors']}")
