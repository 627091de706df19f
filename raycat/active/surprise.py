"""Measuring the strategies once labels come back, and choosing the next mix.

A label is a *surprise* when the prediction made before labeling was on the
other side of the class threshold.  The cross-entropy of that earlier
prediction against the new label (natural log, in nats) says how much the
label will change the model; summed over the surprises it is the measure the
decision rule compares.  Probabilities are clipped to ``[EPS, 1 - EPS]``
(``EPS = 1e-7``) before the logarithm, so a confidently wrong 0 or 1 costs
about 16.1 nats instead of infinity.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from numbers import Real
from typing import Any, Literal

import numpy as np
import pandas as pd

from raycat.active.errors import ActiveLearningError
from raycat.active.page import EPS, PRIORITY, binary_entropy, combined_score, plain

logger = logging.getLogger(__name__)

Combine = Literal["auto", "product", "average"]
ANALYSIS_COLUMNS: tuple[str, ...] = (
    "queued",
    "labels",
    "surprises",
    "surprise_rate",
    "cross_entropy_mean",
    "cross_entropy_sum",
    "surprise_cross_entropy_sum",
    "surprise_cross_entropy_per_label",
)
# The counts and sums among them: what adds up across seeds or iterations.
SUMMED_COLUMNS: tuple[str, ...] = (
    "queued",
    "labels",
    "surprises",
    "cross_entropy_sum",
    "surprise_cross_entropy_sum",
)
# The two targeted strategies the decision rule weighs against each other.
_TARGETED = ("disagreement", "uncertainty")


def _require(frame: pd.DataFrame, what: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ActiveLearningError(
            f"{what} lacks column {missing[0]!r}; it needs {', '.join(columns)} "
            f"(has {list(frame.columns)})"
        )


def _pair(row: pd.Series) -> str:
    return f"({plain(row['product_id'])!r}, {plain(row['category'])!r})"


def attach_labels(
    items: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    thresholds: float | Mapping[str, float] = 0.5,
) -> pd.DataFrame:
    """The queued items that got a label, with what the label says about them.

    Joins on (product_id, category); labels of pairs that were not queued are
    ignored (logged).  Several labels of one item each count.  Adds columns
    ``value`` (0/1), ``predicted`` (``p_model >= threshold``), ``surprise``
    and ``cross_entropy`` (nats, of the clipped ``p_model``).
    """
    _require(items, "items", ("product_id", "category", "strategy", "p_model"))
    _require(labels, "labels", ("product_id", "category", "value"))
    dup = items.duplicated(["product_id", "category"])
    if dup.any():
        row = items[dup].iloc[0]
        raise ActiveLearningError(
            f"items queue {_pair(row)} more than once; pass the page as "
            "compose_page returned it"
        )
    p = pd.to_numeric(items["p_model"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~((p >= 0) & (p <= 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        row = items.iloc[i]
        raise ActiveLearningError(
            f"items row {i} {_pair(row)} has p_model {plain(row['p_model'])!r}; "
            "the earlier prediction must lie in [0, 1]"
        )
    value = pd.to_numeric(labels["value"], errors="coerce")
    bad = ~value.isin([0, 1]).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        row = labels.iloc[i]
        raise ActiveLearningError(
            f"labels row {i} {_pair(row)} has value {plain(row['value'])!r}; a "
            "label is 0 (not in the category) or 1"
        )

    right = labels[["product_id", "category"]].assign(value=value.astype(np.int64))
    joined = items.merge(right, on=["product_id", "category"], how="inner")
    ignored = len(labels) - len(joined)
    if ignored:
        logger.info(
            "attach_labels: %d labels are for (product, category) pairs that were "
            "not queued; they do not count for any strategy",
            ignored,
        )
    if isinstance(thresholds, Mapping):
        missing = sorted(set(joined["category"]) - set(thresholds))
        if missing:
            raise ActiveLearningError(
                f"thresholds has no entry for category {missing[0]!r}; give every "
                "labeled category a threshold or pass one number"
            )
        t = joined["category"].map(thresholds).to_numpy(dtype=np.float64)
    else:
        t = np.full(len(joined), float(thresholds))

    p = joined["p_model"].to_numpy(dtype=np.float64)
    y = joined["value"].to_numpy()
    clipped = np.clip(p, EPS, 1.0 - EPS)
    n_clipped = int((clipped != p).sum())
    if n_clipped:
        logger.info(
            "attach_labels: clipped %d predictions to [%g, 1 - %g] before the log",
            n_clipped,
            EPS,
            EPS,
        )
    predicted = p >= t
    return joined.assign(
        predicted=predicted,
        surprise=predicted != (y == 1),
        cross_entropy=-(y * np.log(clipped) + (1 - y) * np.log(1.0 - clipped)),
    )


def surprise_analysis(
    items: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    thresholds: float | Mapping[str, float] = 0.5,
) -> pd.DataFrame:
    """One row per strategy: how surprising its labels were.

    Columns (:data:`ANALYSIS_COLUMNS`): items ``queued``, ``labels`` returned,
    ``surprises``, ``surprise_rate`` (per label), the mean and summed
    cross-entropy of the earlier predictions against the labels, the summed
    cross-entropy of the surprises alone, and that sum per label (the
    measure :func:`decide_strategy` compares).  Means are NaN for a strategy
    with no labels.  Pass the thresholds the page was composed with.
    """
    joined = attach_labels(items, labels, thresholds=thresholds)
    present = set(items["strategy"])
    order = [s for s in PRIORITY if s in present] + sorted(present - set(PRIORITY))
    rows = []
    for strategy in order:
        mine = joined[joined["strategy"] == strategy]
        ce = mine["cross_entropy"].to_numpy()
        surprise = mine["surprise"].to_numpy()
        rows.append(
            {
                "strategy": strategy,
                "queued": int((items["strategy"] == strategy).sum()),
                "labels": len(mine),
                "surprises": int(surprise.sum()),
                "cross_entropy_sum": float(ce.sum()),
                "surprise_cross_entropy_sum": float(ce[surprise].sum()),
            }
        )
    frame = add_rates(pd.DataFrame(rows, columns=["strategy", *SUMMED_COLUMNS]))
    return frame[["strategy", *ANALYSIS_COLUMNS]].set_index("strategy")


def add_rates(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the per-label columns (``surprise_rate``,
    ``cross_entropy_mean``, ``surprise_cross_entropy_per_label``) computed from
    its counts and sums (:data:`SUMMED_COLUMNS`); NaN where ``labels`` is 0.
    Rows summed over seeds or iterations get their rates from here too."""
    labels = frame["labels"].where(frame["labels"] > 0)
    return frame.assign(
        surprise_rate=frame["surprises"] / labels,
        cross_entropy_mean=frame["cross_entropy_sum"] / labels,
        surprise_cross_entropy_per_label=frame["surprise_cross_entropy_sum"] / labels,
    )


@dataclass
class StrategyDecision:
    """The next iteration's strategy mix, with the numbers behind it."""

    # The next iteration's shares, ready for compose_page.
    shares: dict[str, float]
    # disagreement, uncertainty, combined_product or combined_average; or
    # unchanged when neither targeted strategy got labels.
    chosen: str
    reason: str
    margin: float
    # Surprise cross-entropy per label of disagreement and uncertainty.
    measures: dict[str, float] = field(default_factory=dict)
    # Summed surprise cross-entropy of the top half each combination ranks.
    combination_scores: dict[str, float] = field(default_factory=dict)
    # The surprise analysis, strategy -> column -> value.
    analysis: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; NaN becomes None."""
        return _json_safe(asdict(self))


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def decide_strategy(
    analysis: pd.DataFrame,
    items: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    margin: float,
    combine: Combine = "auto",
    thresholds: float | Mapping[str, float] = 0.5,
    random_share: float = 0.5,
) -> StrategyDecision:
    """Choose the next iteration's non-random strategy.

    The measure is the summed cross-entropy of a strategy's surprises per
    label returned, so that a strategy is not favoured for having had a
    larger share.  Disagreement or uncertainty wins when its measure exceeds
    the other's by the relative ``margin`` (0.2: by more than 20%); it then
    gets the whole non-random share ``1 - random_share``.  Otherwise the two
    are combined (:func:`combined_score`): with ``combine="auto"``, every
    labeled item whose disagreement and entropy are known is ranked by each
    combination, and the one whose top half (rounded up; ties to the earlier
    item) holds the larger summed surprise cross-entropy is chosen, the
    average on a tie.  ``combine="product"`` or ``"average"`` forces it.
    """
    if not (isinstance(margin, Real) and margin >= 0):
        raise ActiveLearningError(
            f"decision_margin must be a number >= 0 (0.2 means a 20% lead); got "
            f"{margin!r}"
        )
    if combine not in ("auto", "product", "average"):
        raise ActiveLearningError(
            f"combine must be 'auto', 'product' or 'average'; got {combine!r}"
        )
    if not 0 <= random_share <= 1:
        raise ActiveLearningError(
            f"random_share must lie in [0, 1]; got {random_share!r}"
        )
    if "surprise_cross_entropy_per_label" not in analysis.columns:
        raise ActiveLearningError(
            "analysis lacks column 'surprise_cross_entropy_per_label'; pass the "
            "frame that surprise_analysis returned"
        )

    measures = {
        s: float(analysis.loc[s, "surprise_cross_entropy_per_label"])
        if s in analysis.index
        else math.nan
        for s in _TARGETED
    }
    table = {
        str(s): {k: float(v) for k, v in row.items()}
        for s, row in analysis.to_dict(orient="index").items()
    }
    rest = 1.0 - random_share

    def decision(chosen: str, reason: str, scores: dict[str, float] | None = None):
        shares = {"random": random_share, chosen: rest}
        if chosen == "unchanged":
            shares = {"random": random_share, "disagreement": rest / 2}
            shares["uncertainty"] = rest / 2
        return StrategyDecision(
            shares={s: v for s, v in shares.items() if v > 0},
            chosen=chosen,
            reason=reason,
            margin=float(margin),
            measures=measures,
            combination_scores=scores or {},
            analysis=table,
        )

    d, u = measures["disagreement"], measures["uncertainty"]
    fmt = "{:.4g} nats per label".format
    if math.isnan(d) and math.isnan(u):
        return decision(
            "unchanged",
            "neither disagreement nor uncertainty got labels back; keeping an even "
            "split between them",
        )
    for name, mine, other_name, other in (
        ("disagreement", d, "uncertainty", u),
        ("uncertainty", u, "disagreement", d),
    ):
        if math.isnan(other):
            return decision(
                name,
                f"{other_name} got no labels back, so {name} ({fmt(mine)}) is the "
                "only targeted strategy with evidence",
            )
        if mine > (1.0 + margin) * other:
            return decision(
                name,
                f"{name} wins: its surprises carried {fmt(mine)}, more than "
                f"{1 + margin:g} x {other_name}'s {fmt(other)}",
            )

    tie = (
        f"no clear winner: disagreement {fmt(d)}, uncertainty {fmt(u)}, within "
        f"the margin {margin:g}"
    )
    if combine != "auto":
        return decision(f"combined_{combine}", f"{tie}; combining by {combine} as set")
    scores = _combination_scores(items, labels, thresholds)
    if not scores:
        return decision(
            "combined_average",
            f"{tie}; no labeled item has both disagreement and entropy, so the "
            "combinations cannot be compared; averaging",
        )
    how, other = ("product", "average")
    if scores["product"] <= scores["average"]:
        how, other = other, how
    return decision(
        f"combined_{how}",
        f"{tie}; combining by {how}: the top half of the labeled items by {how} "
        f"held {scores[how]:.4g} nats of surprise, by {other} {scores[other]:.4g}",
        scores,
    )


def _combination_scores(
    items: pd.DataFrame,
    labels: pd.DataFrame,
    thresholds: float | Mapping[str, float],
) -> dict[str, float]:
    """Summed surprise cross-entropy of the top half each combination ranks."""
    if "disagreement" not in items.columns:
        raise ActiveLearningError(
            "items lack column 'disagreement', so combine='auto' cannot compare the "
            "combinations; pass the page from compose_page or set combine to "
            "'product' or 'average'"
        )
    joined = attach_labels(items, labels, thresholds=thresholds)
    if "entropy" in joined.columns:
        h = joined["entropy"].to_numpy(dtype=np.float64)
    else:
        h = binary_entropy(joined["p_model"].to_numpy(dtype=np.float64))
    d = joined["disagreement"].to_numpy(dtype=np.float64)
    known = np.isfinite(d) & np.isfinite(h)
    if not known.any():
        return {}
    d, h = d[known], h[known]
    gain = np.where(joined["surprise"], joined["cross_entropy"], 0.0)[known]
    half = math.ceil(known.sum() / 2)
    out = {}
    for how in ("product", "average"):
        score = combined_score(d, h, how)
        order = np.lexsort((np.arange(score.size), -score))
        out[how] = float(gain[order[:half]].sum())
    return out
