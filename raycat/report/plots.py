"""The report's figures, drawn with matplotlib and embedded as PNG data URIs.

Figures are built on :class:`matplotlib.figure.Figure` directly, not pyplot,
so no GUI backend or global figure state is involved.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# 100 dpi keeps a report with every section around 1 MB.
DPI = 100
F1_METRICS = ("micro_f1", "macro_f1", "hierarchical_f1")
AL_MODELS = ("model_R", "model_A", "random")


def new_figure(width_in: float, height_in: float) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "the report draws its plots with matplotlib; install it with "
            "`pip install matplotlib`"
        ) from err
    return Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")


def data_uri(fig: Figure) -> str:
    """The figure as a ``data:image/png;base64,...`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def model_scores(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Horizontal grouped bars: test micro / macro / hierarchical F1 per model.

    ``rows`` have ``label`` and the three metrics (None when unknown).
    """
    fig = new_figure(9, 1.2 + 0.45 * len(rows))
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    height = 0.8 / len(F1_METRICS)
    for i, metric in enumerate(F1_METRICS):
        values = [_num(r.get(metric)) for r in rows]
        ax.barh(y + (i - 1) * height, values, height, label=metric.replace("_", " "))
    ax.set_yticks(y, [str(r["label"]) for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("test F1")
    ax.set_xlim(0, 1)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return fig


def contribution_weights(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """One panel per ensemble: each component's weight and the change in test
    hierarchical F1 when the ensemble is refitted without it."""
    ensembles = list(dict.fromkeys(str(r.get("ensemble")) for r in rows))
    n_comp = max(sum(1 for r in rows if str(r.get("ensemble")) == e) for e in ensembles)
    fig = new_figure(9, 0.9 + 0.35 * n_comp * len(ensembles))
    axes = fig.subplots(len(ensembles), 2, squeeze=False)
    for (ax_w, ax_d), ens in zip(axes, ensembles, strict=True):
        sub = [r for r in rows if str(r.get("ensemble")) == ens]
        names = [str(r.get("component")) for r in sub]
        y = np.arange(len(sub))
        ax_w.barh(y, [_num(r.get("weight")) for r in sub], color="tab:blue")
        ax_w.set_yticks(y, names)
        ax_w.invert_yaxis()
        ax_w.set_title(f"{ens}: weight", fontsize="medium")
        deltas = [_num(r.get("delta_hierarchical_f1")) for r in sub]
        colors = ["tab:green" if d < 0 else "tab:red" for d in np.nan_to_num(deltas)]
        ax_d.barh(y, deltas, color=colors)
        ax_d.set_yticks(y, [])
        ax_d.invert_yaxis()
        ax_d.axvline(0, color="black", linewidth=0.8)
        ax_d.set_title("hierarchical F1 without it - with it", fontsize="medium")
        for ax in (ax_w, ax_d):
            ax.grid(axis="x", alpha=0.3)
    return fig


def worst_categories(frame: pd.DataFrame, model: str, limit: int = 25) -> Figure:
    """The ``limit`` categories with the lowest F1 (frame sorted worst first);
    other models' F1 on the same categories as dots when the frame has them
    (columns ``f1:<model>``)."""
    sub = frame.head(limit)
    fig = new_figure(9, 1.2 + 0.3 * len(sub))
    ax = fig.add_subplot()
    y = np.arange(len(sub))
    ax.barh(y, sub["f1"].astype(float), color="tab:orange", label=model)
    others = [c for c in sub.columns if c.startswith("f1:")]
    markers = "osd^v<>pPX*"
    for i, col in enumerate(others):
        ax.scatter(
            sub[col].astype(float),
            y,
            s=18,
            marker=markers[i % len(markers)],
            label=col.removeprefix("f1:"),
            zorder=3,
        )
    ax.set_yticks(y, [_short(c) for c in sub["label"]], fontsize="small")
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("test F1")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize="x-small", ncols=2)
    return fig


def tuning_histories(searches: Sequence[Mapping[str, Any]]) -> Figure:
    """One panel per component: the search metric of every trial in order, and
    the best so far.  ``searches`` have ``component``, ``metric``, ``mode`` and
    ``values`` (one per trial, None for a trial without a result)."""
    from matplotlib.ticker import MaxNLocator

    n = len(searches)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = new_figure(3.2 * cols + 0.5, 2.6 * rows + 0.3)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, s in zip(axes, searches, strict=False):
        values = np.array([_num(v) for v in s["values"]], dtype=float)
        trials = np.arange(1, len(values) + 1)
        ax.scatter(trials, values, s=14, color="tab:blue", label="trial")
        finite = np.where(np.isnan(values), -np.inf, values)
        if s.get("mode") == "min":
            finite = np.where(np.isnan(values), np.inf, values)
            best = np.minimum.accumulate(finite)
        else:
            best = np.maximum.accumulate(finite)
        best = np.where(np.isfinite(best), best, np.nan)
        ax.step(trials, best, where="post", color="tab:red", label="best so far")
        ax.set_title(str(s["component"]), fontsize="medium")
        ax.set_xlabel("trial")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(str(s["metric"]), fontsize="small")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="x-small")
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig


def learning_curves(frame: pd.DataFrame, metrics: Sequence[str]) -> Figure:
    """Test metrics against labels used: per model the mean over seeds as a
    line, the range over seeds as a band and each seed as a dot."""
    fig = new_figure(4.2 * len(metrics) + 0.4, 3.6)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    models = [m for m in AL_MODELS if m in set(frame["model"])] + sorted(
        set(frame["model"]) - set(AL_MODELS)
    )
    colors = dict(zip(models, ["tab:blue", "tab:orange", "tab:gray"], strict=False))
    for ax, metric in zip(axes, metrics, strict=True):
        for model in models:
            sub = frame[frame["model"] == model]
            color = colors.get(model)
            per_iter = (
                sub.groupby("iteration")
                .agg(
                    x=("labels_used", "mean"),
                    mean=(metric, "mean"),
                    low=(metric, "min"),
                    high=(metric, "max"),
                )
                .sort_values("x")
            )
            (line,) = ax.plot(
                per_iter["x"], per_iter["mean"], marker="o", color=color, label=model
            )
            ax.fill_between(
                per_iter["x"],
                per_iter["low"],
                per_iter["high"],
                color=line.get_color(),
                alpha=0.18,
                linewidth=0,
            )
            ax.scatter(
                sub["labels_used"], sub[metric], s=8, color=line.get_color(), alpha=0.6
            )
        ax.set_title(metric.removeprefix("test_").replace("_", " "), fontsize="medium")
        ax.set_xlabel("labels used")
        ax.set_ylabel(metric, fontsize="small")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return fig


def surprise_curves(frame: pd.DataFrame, columns: Sequence[str]) -> Figure:
    """Per strategy, over iterations: each of ``columns`` (e.g. the surprise
    rate and the mean cross-entropy of the returned labels)."""
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(4.2 * len(columns) + 0.4, 3.4)
    axes = fig.subplots(1, len(columns), squeeze=False)[0]
    for ax, col in zip(axes, columns, strict=True):
        for strategy, sub in frame.groupby("strategy", sort=True):
            per_iter = sub.groupby("iteration")[col].mean().sort_index()
            ax.plot(per_iter.index, per_iter.values, marker="o", label=str(strategy))
        ax.set_title(col.replace("_", " "), fontsize="medium")
        ax.set_xlabel("iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return fig


def label_counts(counts: Mapping[str, Mapping[str, int]]) -> Figure:
    """Positive and negative labels per source, stacked."""
    sources = list(counts)
    fig = new_figure(7, 1.0 + 0.45 * len(sources))
    ax = fig.add_subplot()
    y = np.arange(len(sources))
    pos = [counts[s].get("positives", 0) for s in sources]
    neg = [counts[s].get("negatives", 0) for s in sources]
    ax.barh(y, pos, color="tab:green", label="positive")
    ax.barh(y, neg, left=pos, color="tab:red", alpha=0.7, label="negative")
    ax.set_yticks(y, sources)
    ax.invert_yaxis()
    ax.set_xlabel("labels (category assignments, ancestors included)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]
