"""The ``raycat report`` command.

No ``from __future__ import annotations`` here: typer reads the command's
annotations at run time.
"""

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to the raycat CLI."""

    @app.command("report")
    def report(
        run_dir: Annotated[
            Path,
            typer.Argument(help="The run's home (runs/<name>), as in its config."),
        ],
        out: Annotated[
            Path | None,
            typer.Option(
                "--out", "-o", help="HTML file to write; default RUN_DIR/report.html."
            ),
        ] = None,
    ) -> None:
        """Write one self-contained HTML page about a run: model metrics,
        contributions, per-category F1, tuning histories, active-learning
        curves, surprises and label counts.  Sections whose pipeline has not
        run yet say which command to run."""
        from raycat.cli import out as console
        from raycat.report import write_report

        path = write_report(run_dir, out)
        console.print(f"report: {path}")
