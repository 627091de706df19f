"""Read what a run's home holds, for the report, without failing on gaps.

Every input is optional: a pipeline that has not run yet, or a file that
another process is still writing, becomes a :class:`Missing` that says what
to run, and the report renders that section as a note.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from raycat.errors import RaycatError
from raycat.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

# The surprise analysis of retrain names its columns after what they sum; the
# report reads both those and the shorter names of the issue that asked for it.
SURPRISE_ALIASES = {
    "cross_entropy_mean": "mean_cross_entropy",
    "cross_entropy_sum": "summed_cross_entropy",
    "surprise_cross_entropy_sum": "surprise_cross_entropy",
}
SIMULATION_COLUMNS = ("iteration", "seed", "model", "labels_used")


class ReportError(RaycatError):
    """The report cannot be made (e.g. the run folder does not exist)."""


@dataclass(frozen=True)
class Missing:
    """An input the report could not use, and how to get it."""

    what: str  # the file, relative to the run's home
    hint: str  # the command that makes it
    problem: str | None = None  # set when the file exists but is unusable

    @property
    def message(self) -> str:
        if self.problem:
            return f"{self.what} could not be read ({self.problem}); {self.hint}"
        return f"not run yet: {self.hint}"


@dataclass
class RunInputs:
    """Everything the report shows, each either loaded or :class:`Missing`."""

    home: Path
    taxonomy: Taxonomy | Missing
    train_pred: dict[str, Any] | Missing
    tune: dict[str, Any] | Missing
    ensemble: dict[str, Any] | Missing
    contributions: list[dict[str, Any]] | Missing
    simulation: pd.DataFrame | Missing
    surprises: pd.DataFrame | Missing
    labels: dict[str, dict[str, int]] | Missing
    notes: list[str] = field(default_factory=list)


def load_inputs(home: str | Path) -> RunInputs:
    """Load every report input from a run's home (``runs/<name>/``)."""
    home = Path(home)
    if not home.is_dir():
        raise ReportError(
            f"run folder {str(home)!r} does not exist; pass a run's home such as "
            "runs/<name> (the `home:` of its pipeline config)"
        )
    metrics = home / "metrics"
    taxonomy = _taxonomy(home)
    return RunInputs(
        home=home,
        taxonomy=taxonomy,
        train_pred=_json(
            metrics / "train-pred.json", home, "run `raycat train-pred CONFIG`"
        ),
        tune=_json(metrics / "tune.json", home, "run `raycat tune CONFIG`"),
        ensemble=_json(metrics / "ensemble.json", home, "run `raycat ensemble CONFIG`"),
        contributions=_contributions(home),
        simulation=_simulation(home),
        surprises=_surprises(home),
        labels=_labels(home, taxonomy),
    )


def _rel(path: Path, home: Path) -> str:
    try:
        return str(path.relative_to(home))
    except ValueError:
        return str(path)


def _json(path: Path, home: Path, hint: str) -> dict[str, Any] | Missing:
    what = _rel(path, home)
    if not path.is_file():
        return Missing(what, hint)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        # A pipeline may be writing it right now; the next report will have it.
        logger.warning("skipping %s: %s", path, err)
        return Missing(what, hint, problem=str(err).splitlines()[0])
    if not isinstance(data, dict):
        return Missing(what, hint, problem=f"a {type(data).__name__}, not an object")
    return data


def _taxonomy(home: Path) -> Taxonomy | Missing:
    path = home / "taxonomy.json"
    hint = "run `raycat prepare CONFIG`"
    if not path.is_file():
        return Missing("taxonomy.json", hint)
    try:
        return Taxonomy.load(path)
    except (OSError, ValueError, KeyError, TypeError, RaycatError) as err:
        logger.warning("skipping %s: %s", path, err)
        return Missing("taxonomy.json", hint, problem=str(err))


def _contributions(home: Path) -> list[dict[str, Any]] | Missing:
    """The overall rows: one per (ensemble, component)."""
    hint = "run `raycat ensemble CONFIG`"
    doc = _json(home / "metrics" / "contributions.json", home, hint)
    if isinstance(doc, Missing):
        # ensemble.json carries the same overall rows, rounded.
        ens = _json(home / "metrics" / "ensemble.json", home, hint)
        if isinstance(ens, dict) and isinstance(ens.get("contributions"), list):
            return [r for r in ens["contributions"] if isinstance(r, dict)]
        return doc
    rows = doc.get("overall")
    if not isinstance(rows, list):
        return Missing(
            "metrics/contributions.json", hint, problem="no list under 'overall'"
        )
    return [r for r in rows if isinstance(r, dict) and r.get("category") is None]


def _parquet(path: Path, home: Path, hint: str) -> pd.DataFrame | Missing:
    what = _rel(path, home)
    if not path.is_file():
        return Missing(what, hint)
    try:
        return pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for a partial file
        logger.warning("skipping %s: %s", path, err)
        return Missing(what, hint, problem=str(err).splitlines()[0])


def _simulation(home: Path) -> pd.DataFrame | Missing:
    hint = "run `raycat simulate CONFIG`"
    frame = _parquet(home / "metrics" / "simulation.parquet", home, hint)
    if isinstance(frame, Missing):
        return frame
    absent = [c for c in SIMULATION_COLUMNS if c not in frame.columns]
    if absent:
        return Missing(
            "metrics/simulation.parquet", hint, problem=f"no column {absent}"
        )
    if not any(c.startswith("test_") for c in frame.columns):
        return Missing(
            "metrics/simulation.parquet", hint, problem="no test_* metric column"
        )
    return frame


def _surprises(home: Path) -> pd.DataFrame | Missing:
    """``metrics/surprises.parquet``, else every iteration's own file."""
    hint = "run `raycat retrain CONFIG` after labelers answered a page"
    path = home / "metrics" / "surprises.parquet"
    if path.is_file():
        frame = _parquet(path, home, hint)
    else:
        # The run's own iterations, else those of its simulation (each seed's
        # active run), summed over seeds.
        files = sorted(home.glob("iterations/iter-*/surprises.parquet")) or sorted(
            home.glob("simulation/seed-*/active/iterations/iter-*/surprises.parquet")
        )
        parts = []
        for file in files:
            part = _parquet(file, home, hint)
            if isinstance(part, Missing):
                continue
            part = part.reset_index() if "strategy" not in part.columns else part
            if "iteration" not in part.columns:
                found = re.search(r"iter-(\d+)", file.parent.name)
                part["iteration"] = int(found.group(1)) if found else len(parts)
            parts.append(part)
        if not parts:
            return Missing("metrics/surprises.parquet", hint)
        frame = _sum_over_seeds(pd.concat(parts, ignore_index=True))
    if isinstance(frame, Missing):
        return frame
    if "strategy" not in frame.columns and frame.index.name == "strategy":
        frame = frame.reset_index()
    frame = frame.rename(columns=SURPRISE_ALIASES)
    if "strategy" not in frame.columns:
        return Missing(
            "metrics/surprises.parquet", hint, problem="no 'strategy' column"
        )
    if "iteration" not in frame.columns:
        frame["iteration"] = 0
    return frame


def _sum_over_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (strategy, iteration): counts and sums added up, the per-label
    figures recomputed from them (a frame with one row each is returned as is)."""
    from raycat.active.surprise import SUMMED_COLUMNS, add_rates

    if (
        any(c not in frame.columns for c in SUMMED_COLUMNS)
        or not frame.duplicated(["strategy", "iteration"]).any()
    ):
        return frame
    summed = frame.groupby(["strategy", "iteration"], as_index=False)
    return add_rates(summed[list(SUMMED_COLUMNS)].sum())


def _labels(
    home: Path, taxonomy: Taxonomy | Missing
) -> dict[str, dict[str, int]] | Missing:
    hint = "run `raycat prepare CONFIG`"
    if not (home / "labels.sqlite").is_file():
        return Missing("labels.sqlite", hint)
    if isinstance(taxonomy, Missing):
        return Missing("labels.sqlite", hint, problem="taxonomy.json is missing")
    from raycat.labels import open_label_store

    try:
        with open_label_store(home, taxonomy) as store:
            return store.counts()
    except Exception as err:  # sqlite3 errors, a locked or partial file
        logger.warning("skipping the label counts of %s: %s", home, err)
        return Missing("labels.sqlite", hint, problem=str(err))
