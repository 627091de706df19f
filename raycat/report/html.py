"""``raycat report``: one self-contained HTML page about a run.

The page embeds its plots as PNG data URIs and its style inline, so it opens
from a file or an e-mail attachment without a network.  Each section reads
one input of the run's home; an input that is missing or unreadable turns its
section into a note saying which command makes it.
"""

from __future__ import annotations

import html
import logging
import math
import numbers
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import pandas as pd

from raycat.report import plots
from raycat.report.inputs import Missing, RunInputs, load_inputs
from raycat.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

REPORT_FILENAME = "report.html"
# A per-category chart past this many bars stops being readable.
WORST_CATEGORIES_PLOTTED = 25
# Other models' F1 shown next to the chosen model's, per category.
MAX_COMPARED_MODELS = 5


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Render the report of the run at ``run_dir`` to ``out`` (default:
    ``<run_dir>/report.html``) and return the path written."""
    inputs = load_inputs(run_dir)
    page = render_report(inputs)
    target = Path(out) if out is not None else inputs.home / REPORT_FILENAME
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    logger.info(
        "wrote the report of %s to %s (%d kB)", run_dir, target, len(page) >> 10
    )
    return target


def render_report(inputs: RunInputs) -> str:
    """The report page as a string."""
    sections: list[tuple[str, str, Callable[[RunInputs], str]]] = [
        ("models", "Models: components and ensembles", _models_section),
        ("contributions", "What each component contributes", _contributions_section),
        ("categories", "F1 per category, worst first", _categories_section),
        ("tuning", "Tuning histories", _tuning_section),
        ("active-learning", "Active learning: learning curves", _simulation_section),
        ("surprises", "Surprise analysis per strategy", _surprises_section),
        ("labels", "Labels by source", _labels_section),
    ]
    parts = [_header(inputs, sections)]
    for anchor, title, build in sections:
        try:
            body = build(inputs)
        except Exception as err:  # one odd input must not sink the whole page
            logger.warning("report section %r failed: %s", anchor, err, exc_info=True)
            body = _note(
                f"this section could not be drawn ({type(err).__name__}: {err})",
                css="missing error",
            )
        parts.append(
            f'<section id="{anchor}">\n<h2>{_e(title)}</h2>\n{body}\n</section>'
        )
    template = Template(
        resources.files("raycat.report").joinpath("template.html").read_text("utf-8")
    )
    return template.substitute(
        title=_e(f"raycat report: {inputs.home.name}"), body="\n".join(parts)
    )


# -- the header ---------------------------------------------------------------


def _header(inputs: RunInputs, sections: Sequence[tuple[str, str, Any]]) -> str:
    tax = inputs.taxonomy
    if isinstance(tax, Taxonomy):
        levels = ", ".join(f"level {k}: {v}" for k, v in tax.level_sizes().items())
        taxonomy = f"{len(tax)} categories ({levels})"
    else:
        taxonomy = tax.message
    current = "none yet"
    if isinstance(inputs.ensemble, dict):
        chosen = (inputs.ensemble.get("selection") or {}).get("chosen")
        current = chosen or current
    status = []
    for name, value in (
        ("train-pred", inputs.train_pred),
        ("tune", inputs.tune),
        ("ensemble", inputs.ensemble),
        ("contributions", inputs.contributions),
        ("active-learning simulation", inputs.simulation),
        ("surprise analysis", inputs.surprises),
        ("label store", inputs.labels),
    ):
        if isinstance(value, Missing):
            status.append(f'<li class="todo">{_e(name)}: {_msg(value)}</li>')
        else:
            status.append(f'<li class="ok">{_e(name)}</li>')
    toc = "".join(f'<li><a href="#{a}">{_e(t)}</a></li>' for a, t, _ in sections)
    return (
        f"<header>\n<h1>raycat report: {_e(inputs.home.name)}</h1>\n"
        f'<p class="sub">run home <code>{_e(str(inputs.home.resolve()))}</code>; '
        f"generated {_e(time.strftime('%Y-%m-%d %H:%M:%S %Z'))}</p>\n"
        f"<p>Taxonomy: {_e(taxonomy)}. Current model: <b>{_e(current)}</b>.</p>\n"
        f'<ul class="status">{"".join(status)}</ul>\n'
        f"<nav><ul>{toc}</ul></nav>\n</header>"
    )


# -- models -------------------------------------------------------------------


def model_rows(inputs: RunInputs) -> list[dict[str, Any]]:
    """One row per evaluated model, in pipeline order: train-pred components,
    tuned components (refit with their best hyperparameters), then the models
    compared by the ensemble step (components and ensembles)."""
    rows: list[dict[str, Any]] = []
    if isinstance(inputs.train_pred, dict):
        for comp in _dicts(inputs.train_pred.get("components")):
            rows.append(_row("train-pred", comp.get("component"), comp))
    if isinstance(inputs.tune, dict):
        for search in _dicts(inputs.tune.get("components")):
            final = search.get("final") if isinstance(search.get("final"), dict) else {}
            stage = f"tune ({search.get('trials', '?')} trials)"
            if not search.get("ok", True):
                final = {"ok": False, "error": search.get("error", "search failed")}
            rows.append(_row(stage, search.get("component"), final, kind=final))
    if isinstance(inputs.ensemble, dict):
        chosen = (inputs.ensemble.get("selection") or {}).get("chosen")
        models = inputs.ensemble.get("models")
        for name, res in (models or {}).items():
            if not isinstance(res, dict):
                continue
            row = _row("ensemble", name, {"ok": True, "metrics": res, **res})
            row["current"] = name == chosen
            rows.append(row)
    return rows


def _row(
    stage: str, name: Any, res: Mapping[str, Any], kind: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "stage": stage,
        "model": str(name),
        "kind": (kind or res).get("kind", ""),
        "label": f"{name} ({stage.split(' ')[0]})",
        "current": False,
    }
    if not res.get("ok", False):
        row["error"] = str(res.get("error", "no result"))
        return row
    metrics = res.get("metrics") if isinstance(res.get("metrics"), dict) else {}
    for split in ("valid", "test"):
        values = metrics.get(split) if isinstance(metrics.get(split), dict) else {}
        for m in plots.F1_METRICS:
            row[f"{split}_{m}"] = values.get(m)
    test = metrics.get("test") if isinstance(metrics.get("test"), dict) else {}
    row["per_category"] = test.get("per_category")
    for m in plots.F1_METRICS:
        row[m] = row.get(f"test_{m}")
    return row


def _models_section(inputs: RunInputs) -> str:
    rows = model_rows(inputs)
    if not rows:
        missing = [
            m
            for m in (inputs.train_pred, inputs.tune, inputs.ensemble)
            if isinstance(m, Missing)
        ]
        return "".join(_note(_msg(m)) for m in missing)
    columns = ["stage", "model", "kind"] + [
        f"{s}_{m}" for s in ("valid", "test") for m in plots.F1_METRICS
    ]
    body = [
        "<p>Validation metrics are each model's own validation split (the "
        "meta-valid half for the ensemble step); test metrics are on the "
        "ground-truth test set. The highlighted row is the run's current model."
        "</p>",
        _table(
            [*columns, "error"],
            rows,
            row_class=lambda r: "current" if r.get("current") else "",
        ),
    ]
    scored = [r for r in rows if "error" not in r]
    if scored:
        fig = plots.model_scores(scored)
        body.append(_figure(fig, "Test micro, macro and hierarchical F1 per model."))
    for m in (inputs.train_pred, inputs.tune, inputs.ensemble):
        if isinstance(m, Missing):
            body.append(_note(_msg(m)))
    return "\n".join(body)


# -- contributions ------------------------------------------------------------


def _contributions_section(inputs: RunInputs) -> str:
    rows = inputs.contributions
    if isinstance(rows, Missing):
        return _note(_msg(rows))
    if not rows:
        return _note("the ensemble step wrote no contribution rows")
    columns = [
        "ensemble",
        "component",
        "weight",
        "delta_micro_f1",
        "delta_macro_f1",
        "delta_hierarchical_f1",
    ]
    return "\n".join(
        [
            "<p><code>weight</code> is the weighted ensemble's weight, or the "
            "stacked ensemble's mean coefficient on the component; "
            "<code>delta_*</code> is the test metric of the ensemble refitted "
            "without the component minus the metric with it (negative: the "
            "component helps).</p>",
            _table(columns, rows),
            _figure(
                plots.contribution_weights(rows),
                "Weights, and the change in test hierarchical F1 without each "
                "component (green: the ensemble is worse without it).",
            ),
        ]
    )


# -- per-category F1 ------------------------------------------------------------


def _categories_section(inputs: RunInputs) -> str:
    rows = [r for r in model_rows(inputs) if isinstance(r.get("per_category"), list)]
    if not rows:
        missing = [
            m for m in (inputs.train_pred, inputs.tune) if isinstance(m, Missing)
        ]
        if missing:
            return _note(_msg(missing[0]))
        return _note("no model reported per-category test metrics")

    chosen = _pick_model(rows)
    frame = pd.DataFrame(_dicts(chosen["per_category"]))
    if frame.empty or "f1" not in frame.columns or "category" not in frame.columns:
        return _note(f"{chosen['label']} has no per-category F1")
    frame["label"] = [_category_label(c, inputs.taxonomy) for c in frame["category"]]
    others = sorted(
        (r for r in rows if r is not chosen),
        key=lambda r: -_f(r.get("test_hierarchical_f1")),
    )[:MAX_COMPARED_MODELS]
    for other in others:
        f1 = {
            d.get("category"): d.get("f1")
            for d in _dicts(other["per_category"])
            if "category" in d
        }
        frame[f"f1:{other['label']}"] = frame["category"].map(f1)
    # Worst F1 first; categories without test products (F1 undefined) last.
    untested = frame["support"].fillna(0).le(0) if "support" in frame else False
    frame = (
        frame.assign(_untested=untested)
        .sort_values(
            ["_untested", "f1", "support"] if "support" in frame else ["f1"],
            ascending=[True, True, False] if "support" in frame else [True],
            na_position="first",
        )
        .drop(columns="_untested")
    )
    columns = [
        c
        for c in (
            "label",
            "depth",
            "support",
            "precision",
            "recall",
            "f1",
            "average_precision",
        )
        if c in frame.columns
    ] + [c for c in frame.columns if c.startswith("f1:")]
    records = frame.to_dict("records")
    return "\n".join(
        [
            f"<p>Test metrics per category of <b>{_e(chosen['label'])}</b> "
            f"({len(frame)} categories), worst F1 first; the <code>f1:</code> "
            "columns are other models' F1 on the same category.</p>",
            _figure(
                plots.worst_categories(
                    frame, chosen["label"], limit=WORST_CATEGORIES_PLOTTED
                ),
                f"The {min(len(frame), WORST_CATEGORIES_PLOTTED)} categories "
                "with the lowest test F1.",
            ),
            f'<div class="scroll">{_table(columns, records)}</div>',
        ]
    )


def _pick_model(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The current model if it has per-category metrics, else the best by test
    hierarchical F1, preferring later stages (ensemble, tune, train-pred)."""
    for r in rows:
        if r.get("current"):
            return r
    for stage in ("ensemble", "tune", "train-pred"):
        staged = [r for r in rows if r["stage"].startswith(stage)]
        if staged:
            return max(staged, key=lambda r: _f(r.get("test_hierarchical_f1")))
    return rows[0]


def _category_label(cid: Any, taxonomy: Taxonomy | Missing) -> str:
    if isinstance(taxonomy, Taxonomy) and cid in taxonomy:
        return taxonomy.path_str(str(cid))
    return str(cid)


# -- tuning -----------------------------------------------------------------------


def _tuning_section(inputs: RunInputs) -> str:
    if isinstance(inputs.tune, Missing):
        return _note(_msg(inputs.tune))
    searches, rows = [], []
    for s in _dicts(inputs.tune.get("components")):
        metric = s.get("metric")
        history = _dicts(s.get("history"))
        final = s.get("final") if isinstance(s.get("final"), dict) else {}
        test = ((final.get("metrics") or {}).get("test") or {}) if final else {}
        rows.append(
            {
                "component": s.get("component"),
                "metric": metric,
                "mode": s.get("mode"),
                "trials": s.get("trials", len(history)),
                "trials_errored": s.get("trials_errored"),
                "best": s.get("best_metric"),
                "refit_test_hierarchical_f1": test.get("hierarchical_f1"),
                "error": s.get("error") or final.get("error"),
            }
        )
        if metric and history:
            searches.append(
                {
                    "component": s.get("component"),
                    "metric": metric,
                    "mode": s.get("mode", "max"),
                    "values": [h.get(metric) for h in history],
                }
            )
    if not rows:
        return _note("tune.json lists no component")
    body = [_table(list(rows[0]), rows)]
    if searches:
        body.append(
            _figure(
                plots.tuning_histories(searches),
                "The search metric of each trial (validation split), in the "
                "order trials reported, and the best so far.",
            )
        )
    else:
        body.append(_note("no trial history recorded"))
    return "\n".join(body)


# -- active learning ------------------------------------------------------------


def _simulation_section(inputs: RunInputs) -> str:
    frame = inputs.simulation
    if isinstance(frame, Missing):
        return _note(_msg(frame))
    metrics = [
        m
        for m in ("test_micro_f1", "test_macro_f1", "test_hierarchical_f1")
        if m in frame.columns
    ] or [c for c in frame.columns if c.startswith("test_")][:3]
    last = frame["iteration"].max()
    final = frame[frame["iteration"] == last]
    summary = []
    for model, sub in final.groupby("model", sort=False):
        row: dict[str, Any] = {
            "model": model,
            "seeds": sub["seed"].nunique(),
            "labels_used": round(float(sub["labels_used"].mean())),
        }
        for m in metrics:
            std = sub[m].std(ddof=0)
            row[m] = f"{sub[m].mean():.4f} ± {0.0 if math.isnan(std) else std:.4f}"
        summary.append(row)
    return "\n".join(
        [
            "<p>Model-R learns from the randomly sampled human labels, model-A "
            "from the disagreement and uncertainty ones (both on top of the "
            "rule labels), and the random baseline spends the whole budget on "
            "random samples. Lines are the mean over seeds, bands the range, "
            "dots single seeds.</p>",
            _figure(
                plots.learning_curves(frame, metrics),
                "Test metrics against the number of labels used.",
            ),
            f"<h3>After iteration {_e(last)} (mean ± std over seeds)</h3>",
            _table(list(summary[0]), summary) if summary else "",
        ]
    )


# -- surprises --------------------------------------------------------------------


def _surprises_section(inputs: RunInputs) -> str:
    frame = inputs.surprises
    if isinstance(frame, Missing):
        return _note(_msg(frame))
    frame = frame.copy()
    if "surprise_rate" not in frame.columns and {"surprises", "labels"} <= set(
        frame.columns
    ):
        labels = frame["labels"].astype(float).where(frame["labels"] > 0)
        frame["surprise_rate"] = frame["surprises"] / labels
    sums = [
        c
        for c in (
            "labels",
            "surprises",
            "summed_cross_entropy",
            "surprise_cross_entropy",
        )
        if c in frame.columns
    ]
    totals = frame.groupby("strategy")[sums].sum() if sums else pd.DataFrame()
    if {"surprises", "labels"} <= set(totals.columns):
        totals["surprise_rate"] = totals["surprises"] / totals["labels"].where(
            totals["labels"] > 0
        )
    if {"summed_cross_entropy", "labels"} <= set(totals.columns):
        totals["mean_cross_entropy"] = totals["summed_cross_entropy"] / totals[
            "labels"
        ].where(totals["labels"] > 0)
    totals = totals.reset_index()
    plotted = [c for c in ("surprise_rate", "mean_cross_entropy") if c in frame.columns]
    body = [
        "<p>For the labels returned by the labelers, per strategy that queued "
        "the product: how often the model was surprised (it was confident and "
        "wrong) and the cross-entropy of its predictions against the labels. "
        f"{frame['iteration'].nunique()} iteration(s).</p>",
        _table(list(totals.columns), totals.to_dict("records")),
    ]
    if plotted:
        body.append(
            _figure(
                plots.surprise_curves(frame, plotted),
                "Per strategy and iteration: the share of surprising labels and "
                "the mean cross-entropy.",
            )
        )
    return "\n".join(body)


# -- labels -----------------------------------------------------------------------


def _labels_section(inputs: RunInputs) -> str:
    counts = inputs.labels
    if isinstance(counts, Missing):
        return _note(_msg(counts))
    rows = [{"source": s, **c} for s, c in counts.items()]
    return "\n".join(
        [
            "<p>Label events in the run's label store, by where they came from; "
            "a product's label in a category implies its ancestors, and those "
            "derived labels are counted too.</p>",
            _table(["source", "events", "products", "positives", "negatives"], rows),
            _figure(plots.label_counts(counts), "Positive and negative labels."),
        ]
    )


# -- HTML helpers -------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _msg(missing: Missing) -> str:
    """A Missing's message with its command in <code>."""
    text = _e(missing.message)
    head, sep, rest = text.partition("`")
    if not sep:
        return text
    cmd, sep2, tail = rest.partition("`")
    return f"{head}<code>{cmd}</code>{tail}" if sep2 else text


def _note(text_html: str, css: str = "missing") -> str:
    return f'<p class="{css}">{text_html}</p>'


def _figure(fig: Any, caption: str) -> str:
    uri = plots.data_uri(fig)
    return (
        f'<figure><img src="{uri}" alt="{_e(caption)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _table(
    columns: Sequence[str],
    rows: Iterable[Mapping[str, Any]],
    row_class: Callable[[Mapping[str, Any]], str] | None = None,
) -> str:
    rows = list(rows)
    shown = [c for c in columns if any(r.get(c) not in (None, "") for r in rows)]
    head = "".join(f"<th>{_e(c)}</th>" for c in shown)
    body = []
    for r in rows:
        css = row_class(r) if row_class else ""
        cells = "".join(_cell(r.get(c), error=c == "error") for c in shown)
        body.append(f'<tr class="{css}">{cells}</tr>' if css else f"<tr>{cells}</tr>")
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _cell(value: Any, *, error: bool = False) -> str:
    if value is None or (isinstance(value, numbers.Real) and math.isnan(value)):
        return "<td></td>"
    if isinstance(value, bool | np.bool_):
        return f"<td>{'yes' if value else ''}</td>"
    if isinstance(value, numbers.Integral):
        return f'<td class="num">{value}</td>'
    if isinstance(value, numbers.Real):
        return f'<td class="num">{float(value):.4f}</td>'
    css = ' class="error"' if error else ""
    return f"<td{css}>{_e(value)}</td>"


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _f(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return -math.inf
    return -math.inf if math.isnan(out) else out
