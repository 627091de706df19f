"""What each component brings to an ensemble.

Two views, for every ensemble and component:

- its weight: the weighted ensemble's weight (the same for every category) or
  the stacked ensemble's coefficient on the component's log-odds, overall
  (averaged over the categories with a model) and per category;
- its marginal value: the change in test micro / macro / hierarchical F1 when
  the combiner is refitted without it on the same out-of-fold predictions
  (``delta_* = metric without it - metric with it``; negative means the
  component helps).

The table is long: one overall row per (ensemble, component), whose
``category`` is null, then one row per category with its weight only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from raycat.ensembles.base import EnsembleComponent

logger = logging.getLogger(__name__)

DELTA_METRICS = ("micro_f1", "macro_f1", "hierarchical_f1")


def contribution_rows(
    ensemble: EnsembleComponent,
    test_metrics: Mapping[str, float],
    without: Mapping[str, Mapping[str, float]],
) -> list[dict[str, Any]]:
    """Rows of the contribution table for one fitted ensemble.

    ``test_metrics`` are the ensemble's test metrics; ``without[c]`` those of
    the same ensemble refitted without component ``c`` (components missing from
    it get null deltas, e.g. when the ensemble has a single component).
    """
    weights = ensemble.contributions()
    sources = ensemble.category_sources()
    overall, per_category = [], []
    for comp, w in weights.items():
        row: dict[str, Any] = {
            "ensemble": ensemble.name,
            "kind": ensemble.kind,
            "component": comp,
            "category": None,
            "weight": float(w["overall"]),
        }
        for m in DELTA_METRICS:
            after = without.get(comp, {}).get(m)
            row[f"without_{m}"] = None if after is None else float(after)
            row[f"delta_{m}"] = (
                None if after is None else float(after) - float(test_metrics[m])
            )
        overall.append(row)
        for j, cid in enumerate(ensemble.taxonomy.ids):
            per_category.append(
                {
                    "ensemble": ensemble.name,
                    "kind": ensemble.kind,
                    "component": comp,
                    "category": cid,
                    "weight": float(w["per_category"][j]),
                    "source": sources[j],
                }
            )
    return overall + per_category


def write_contributions(home: Path, rows: list[dict[str, Any]]) -> dict[str, Path]:
    """``<home>/metrics/contributions.parquet`` (every row) and ``.json``
    (overall rows, and per category weights grouped by ensemble and component)."""
    out = Path(home) / "metrics"
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    frame.to_parquet(out / "contributions.parquet", index=False)

    overall = [r for r in rows if r["category"] is None]
    per_category: dict[str, dict[str, dict[str, float]]] = {}
    for r in rows:
        if r["category"] is not None:
            per_category.setdefault(r["ensemble"], {}).setdefault(r["component"], {})[
                r["category"]
            ] = r["weight"]
    doc = {"overall": overall, "per_category": per_category}
    (out / "contributions.json").write_text(json.dumps(doc, indent=1))
    return {
        "parquet": out / "contributions.parquet",
        "json": out / "contributions.json",
    }


def overall_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The overall rows, rounded for display."""
    return [
        {
            k: (round(v, 4) if isinstance(v, float) else v)
            for k, v in r.items()
            if k not in ("category", "source")
        }
        for r in rows
        if r["category"] is None
    ]
