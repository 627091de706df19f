"""Metrics for hierarchical multi-label predictions, and per-category thresholds.

Every function here takes matrices with one row per product and one column per
category, in :attr:`raycat.taxonomy.Taxonomy.ids` order:

- ``y_true``: 0/1 labels, closed under ancestors (a product in ``a/b`` is in
  ``a`` too);
- ``probs``: scores in ``[0, 1]``.

A category is predicted when its probability reaches its threshold
(``probs >= threshold``), and the decisions are then closed under ancestors
(:func:`predict_labels`), so every metric judges the hierarchy-consistent
predictions that raycat actually returns.

The typical flow: pick thresholds on validation data with
:func:`choose_thresholds`, score the test set with :func:`evaluate`, compare
models with :func:`metrics_table`.

Nothing here loops over products; loops run over categories or levels only, so
10^5 products by 10^3 categories take seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from raycat.errors import RaycatError
from raycat.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5
"""The threshold of a category that has no better one chosen on validation data."""

DEFAULT_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)
"""Candidate thresholds 0.05, 0.10, ..., 0.95.

A coarse grid is the default rather than every observed probability: on a small
validation set the exact optimum sits on one product's score and does not carry
over to new data, while a 0.05 step still moves F1 by little.
"""

OBSERVED = "observed"
"""Pass as ``grid`` to try every probability that a positive product received."""

HEADLINE_METRICS = (
    "micro_f1",
    "macro_f1",
    "macro_f1_all",
    "micro_precision",
    "micro_recall",
    "hierarchical_precision",
    "hierarchical_recall",
    "hierarchical_f1",
    "macro_average_precision",
)
"""The columns of :func:`metrics_table`, before the per-level ones."""

# Columns gathered at a time when ranking scores: 64 columns of 10^5 float64
# scores take 50 MB, and fewer columns per block would add Python overhead.
_SORT_BLOCK = 64
# Rows per step of that gather; 4096 rows of a 64-column block fit in cache.
_ROW_CHUNK = 4096


class EvaluationError(RaycatError, ValueError):
    """Labels, probabilities or thresholds given to an evaluation are unusable."""


# -- public API ---------------------------------------------------------------


def choose_thresholds(
    y_true: np.ndarray,
    probs: np.ndarray,
    *,
    default: float = DEFAULT_THRESHOLD,
    grid: Sequence[float] | np.ndarray | str | None = None,
    min_positives: int = 1,
) -> np.ndarray:
    """Choose, for each category, the threshold that maximizes its F1.

    Run this on validation data, never on the data you report metrics on.
    Each category is tuned on its own, before the closure under ancestors that
    :func:`predict_labels` applies, so a parent may later gain positives from
    its children's decisions.

    Parameters
    ----------
    y_true : array of shape (n_products, n_categories)
        0/1 validation labels.
    probs : array of shape (n_products, n_categories)
        Validation probabilities in ``[0, 1]``.
    default : float
        The threshold kept by categories with too few positives, and the
        tie-breaker: among thresholds with the same best F1 the one closest to
        ``default`` wins (the higher one when two are equally close), so a
        threshold moves away from ``default`` only when the data says so.
    grid : sequence of float, ``"observed"`` or None
        Candidate thresholds.  ``None`` uses :data:`DEFAULT_GRID` (0.05 to 0.95
        in steps of 0.05).  ``"observed"`` tries every probability that a
        positive product of the category received, which finds the exact
        optimum on this data but overfits small validation sets.
    min_positives : int
        Categories with fewer positive products than this keep ``default``;
        an F1 optimum over one or two positives is mostly noise.

    Returns
    -------
    numpy.ndarray of shape (n_categories,)
        One threshold per category; a category counts as predicted when
        ``probs >= threshold``.  A category whose best F1 is 0 keeps
        ``default``.

    Raises
    ------
    EvaluationError
        When the matrices have the wrong shape or values, or a setting is out
        of range.
    """
    y, p = _check_pair(y_true, probs)
    default = _check_unit_float("default", default)
    if isinstance(min_positives, bool) or not isinstance(
        min_positives, int | np.integer
    ):
        raise EvaluationError(
            f"min_positives must be an integer >= 0; got {min_positives!r}"
        )
    if min_positives < 0:
        raise EvaluationError(f"min_positives must be >= 0; got {min_positives}")
    candidates = _check_grid(grid)

    n_categories = y.shape[1]
    thresholds = np.full(n_categories, default, dtype=np.float64)
    support = np.count_nonzero(y, axis=0)
    tuned = np.flatnonzero(support >= max(min_positives, 1))
    floor = None if candidates is None else float(candidates[0])
    for j, top, sorted_pos in _ranked_columns(y, p, tuned, floor=floor):
        cand = np.unique(sorted_pos) if candidates is None else candidates
        # For a threshold t: predicted = #scores >= t, true positives =
        # #positive scores >= t; both by binary search in the sorted scores.
        predicted = len(top) - np.searchsorted(top, cand, side="left")
        hits = len(sorted_pos) - np.searchsorted(sorted_pos, cand, side="left")
        f1 = 2.0 * hits / (predicted + len(sorted_pos))
        thresholds[j] = _best_threshold(cand, f1, default)

    n_default = n_categories - len(tuned)
    if n_default:
        logger.info(
            "%d of %d categories have fewer than %d positive products and keep "
            "the default threshold %.2f",
            n_default,
            n_categories,
            max(min_positives, 1),
            default,
        )
    return thresholds


def predict_labels(
    probs: np.ndarray,
    thresholds: np.ndarray | Sequence[float] | float,
    taxonomy: Taxonomy,
) -> np.ndarray:
    """Turn probabilities into 0/1 decisions that respect the hierarchy.

    A category is predicted when ``probs >= threshold``; every ancestor of a
    predicted category is then predicted too (a product in a child is in its
    parent), whatever the parent's own score.

    Parameters
    ----------
    probs : array of shape (n_products, n_categories)
        Probabilities in ``[0, 1]``, columns in ``taxonomy.ids`` order.
    thresholds : array of shape (n_categories,) or float
        One threshold per category, or one for all.
    taxonomy : Taxonomy
        The tree whose ancestors close the decisions.

    Returns
    -------
    numpy.ndarray of uint8, shape (n_products, n_categories)
        The decisions, closed under ancestors.
    """
    p = _check_probs(probs)
    _check_columns("probs", p, taxonomy)
    thr = _check_thresholds(thresholds, len(taxonomy))
    return _decide(p, thr, taxonomy).view(np.uint8)


def evaluate(
    y_true: np.ndarray,
    probs: np.ndarray,
    taxonomy: Taxonomy,
    thresholds: np.ndarray | Sequence[float] | float | None = None,
) -> dict:
    """Score predictions against labels: flat, hierarchical, per level and per
    category.

    The predictions are :func:`predict_labels` of ``probs`` (thresholded, then
    closed under ancestors).  ``y_true`` should be closed already; when it is
    not, it is closed here with a warning.

    Parameters
    ----------
    y_true : array of shape (n_products, n_categories)
        0/1 labels, columns in ``taxonomy.ids`` order.
    probs : array of shape (n_products, n_categories)
        Probabilities in ``[0, 1]``.
    taxonomy : Taxonomy
        The category tree.
    thresholds : array of shape (n_categories,), float or None
        Per-category thresholds (from :func:`choose_thresholds`), one for all
        categories, or ``None`` for 0.5 everywhere.

    Returns
    -------
    dict
        JSON-serializable (plain floats, ints, strings, lists, None):

        - ``micro_precision``, ``micro_recall``, ``micro_f1``: over each
          product's most specific labels (true and predicted labels none of
          whose children is also a label), summed over products: an exact
          category match, no credit for ancestors;
        - ``macro_f1``: the mean F1 of the categories with at least one
          positive product in ``y_true`` (a category nobody belongs to has no
          recall, and counting it as 0 would punish a model for the test set's
          gaps); ``macro_f1_all``: the mean over every category, with F1 = 0
          where undefined;
        - ``macro_average_precision``: the mean average precision over the
          categories with at least one positive product;
        - ``hierarchical_precision``, ``hierarchical_recall``,
          ``hierarchical_f1``: each product's predicted set P and true set T,
          both closed under ancestors (the root is not a category), summed
          over products: hP = sum |P & T| / sum |P|,
          hR = sum |P & T| / sum |T|.  A wrong leaf under the right parent
          still earns credit for the shared ancestors;
        - ``per_level``: for each depth as a string (``"1"`` is the top level),
          ``micro_f1``, ``macro_f1`` and the hierarchical precision, recall and
          F1 restricted to the categories at that depth, plus
          ``n_categories``;
        - ``per_category``: one dict per category in ``taxonomy.ids`` order
          with ``category``, ``depth``, ``support`` (positive products),
          ``precision``, ``recall``, ``f1`` (0.0 where undefined),
          ``average_precision`` (as scikit-learn's ``average_precision_score``;
          None when the support is 0) and ``threshold``;
        - ``n_products``, ``n_categories``.

        Any ratio with a zero denominator is 0.0.

    Raises
    ------
    EvaluationError
        When a matrix has the wrong shape or values, or does not match the
        taxonomy.

    Notes
    -----
    The flat micro metrics count only each product's most specific labels
    (true and predicted): a wrong leaf under the right parent is simply wrong.
    The hierarchical metrics give it credit for the shared ancestors, so
    hierarchical F1 is the more forgiving of the two.  (Counted on the closed
    sets, micro and hierarchical would be the same number.)
    """
    y, p = _check_pair(y_true, probs)
    _check_columns("y_true", y, taxonomy)
    n_products, n_categories = y.shape
    thr = (
        np.full(n_categories, DEFAULT_THRESHOLD)
        if thresholds is None
        else _check_thresholds(thresholds, n_categories)
    )

    closed = _close(y, taxonomy)
    n_unclosed = int(np.count_nonzero(np.any(closed != y, axis=1)))
    if n_unclosed:
        logger.warning(
            "y_true is not closed under ancestors for %d of %d products; their "
            "ancestors were added before scoring (build labels with "
            "Taxonomy.multi_hot to avoid this)",
            n_unclosed,
            n_products,
        )
        y = closed

    pred = _decide(p, thr, taxonomy)
    support = np.count_nonzero(y, axis=0)
    predicted = np.count_nonzero(pred, axis=0)
    hits = np.count_nonzero(y & pred, axis=0)
    precision = _ratio(hits, predicted)
    recall = _ratio(hits, support)
    f1 = _ratio(2 * hits, predicted + support)
    ap = _average_precision(y, p, support)

    # Flat counts on each product's most specific labels only: an exact
    # category match, no credit for shared ancestors.
    y_spec, pred_spec = _most_specific(y, taxonomy), _most_specific(pred, taxonomy)
    flat = (
        np.count_nonzero(y_spec & pred_spec, axis=0),
        np.count_nonzero(pred_spec, axis=0),
        np.count_nonzero(y_spec, axis=0),
    )

    out: dict = _summary(hits, predicted, support, f1, flat)
    out["macro_average_precision"] = _mean_where(ap, support > 0)
    out["per_level"] = {
        str(int(d)): _level_summary(
            hits, predicted, support, f1, flat, taxonomy.depths == d
        )
        for d in np.unique(taxonomy.depths)
    }
    out["per_category"] = [
        {
            "category": cid,
            "depth": int(taxonomy.depths[j]),
            "support": int(support[j]),
            "precision": float(precision[j]),
            "recall": float(recall[j]),
            "f1": float(f1[j]),
            "average_precision": float(ap[j]) if support[j] else None,
            "threshold": float(thr[j]),
        }
        for j, cid in enumerate(taxonomy.ids)
    ]
    out["n_products"] = int(n_products)
    out["n_categories"] = int(n_categories)
    return out


def metrics_table(results: Mapping[str, Mapping]) -> pd.DataFrame:
    """One row per model with its headline metrics, for printing.

    Parameters
    ----------
    results : mapping of str to dict
        ``{model_name: evaluate(...)}``.

    Returns
    -------
    pandas.DataFrame
        Indexed by model name (in the order given), with the columns of
        :data:`HEADLINE_METRICS`, then ``level_<d>_micro_f1`` and
        ``level_<d>_macro_f1`` for each depth, then ``n_products``.  A level
        that one model's result lacks is NaN.
    """
    rows = {}
    for name, result in results.items():
        missing = [k for k in (*HEADLINE_METRICS, "per_level") if k not in result]
        if missing:
            raise EvaluationError(
                f"results[{name!r}] lacks {', '.join(map(repr, missing))}; pass "
                "the dicts that raycat.evaluation.evaluate returns"
            )
        row = {k: result[k] for k in HEADLINE_METRICS}
        levels = sorted(result["per_level"].items(), key=lambda kv: int(kv[0]))
        for depth, level in levels:
            row[f"level_{depth}_micro_f1"] = level["micro_f1"]
            row[f"level_{depth}_macro_f1"] = level["macro_f1"]
        row["n_products"] = result.get("n_products")
        rows[str(name)] = row

    table = pd.DataFrame.from_dict(rows, orient="index")
    if table.empty:
        table = pd.DataFrame(columns=[*HEADLINE_METRICS, "n_products"])
    else:
        # Keep n_products last, after levels that only some models have.
        table = table[[c for c in table.columns if c != "n_products"] + ["n_products"]]
    table.index.name = "model"
    return table


# -- metrics ------------------------------------------------------------------


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, 0.0 where den is 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _mean_where(values: np.ndarray, mask: np.ndarray) -> float:
    return float(values[mask].mean()) if mask.any() else 0.0


def _summary(
    hits: np.ndarray,
    predicted: np.ndarray,
    support: np.ndarray,
    f1: np.ndarray,
    flat: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> dict:
    tp, pp, sp = int(hits.sum()), int(predicted.sum()), int(support.sum())
    ftp, fpp, fsp = (int(a.sum()) for a in flat)
    return {
        "micro_precision": float(_ratio(ftp, fpp)),
        "micro_recall": float(_ratio(ftp, fsp)),
        "micro_f1": float(_ratio(2 * ftp, fpp + fsp)),
        "macro_f1": _mean_where(f1, support > 0),
        "macro_f1_all": float(f1.mean()) if len(f1) else 0.0,
        "hierarchical_precision": float(_ratio(tp, pp)),
        "hierarchical_recall": float(_ratio(tp, sp)),
        "hierarchical_f1": float(_ratio(2 * tp, pp + sp)),
    }


def _most_specific(labels: np.ndarray, taxonomy: Taxonomy) -> np.ndarray:
    """Keep, per product, only the labels none of whose children is labeled."""
    child_cols = np.flatnonzero(taxonomy.parent_index >= 0)
    child_to_parent = sp.csr_matrix(
        (
            np.ones(len(child_cols), dtype=np.int32),
            (child_cols, taxonomy.parent_index[child_cols]),
        ),
        shape=(len(taxonomy), len(taxonomy)),
    )
    has_labeled_child = (sp.csr_matrix(labels, dtype=np.int32) @ child_to_parent) > 0
    return labels.astype(bool) & ~has_labeled_child.toarray()


def _level_summary(
    hits: np.ndarray,
    predicted: np.ndarray,
    support: np.ndarray,
    f1: np.ndarray,
    flat: tuple[np.ndarray, np.ndarray, np.ndarray],
    cols: np.ndarray,
) -> dict:
    full = _summary(
        hits[cols],
        predicted[cols],
        support[cols],
        f1[cols],
        tuple(a[cols] for a in flat),
    )
    return {
        "micro_f1": full["micro_f1"],
        "macro_f1": full["macro_f1"],
        "hierarchical_precision": full["hierarchical_precision"],
        "hierarchical_recall": full["hierarchical_recall"],
        "hierarchical_f1": full["hierarchical_f1"],
        "n_categories": int(np.count_nonzero(cols)),
    }


def _average_precision(y: np.ndarray, p: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Average precision per category, as scikit-learn defines it; NaN where
    the support is 0.

    AP = sum over distinct thresholds t of (R(t) - R(next higher t)) * P(t).
    Recall rises only at a positive's score, by (positives at that score) /
    n_pos, so AP is the mean over positive products of the precision at the
    product's own score, with every product scoring at least as high counted
    as predicted (ties included, as scikit-learn does).
    """
    ap = np.full(y.shape[1], np.nan)
    for j, top, sorted_pos in _ranked_columns(y, p, np.flatnonzero(support)):
        predicted = len(top) - np.searchsorted(top, sorted_pos, side="left")
        hits = len(sorted_pos) - np.searchsorted(sorted_pos, sorted_pos, side="left")
        ap[j] = float(np.mean(hits / predicted))
    return ap


def _ranked_columns(
    y: np.ndarray, p: np.ndarray, cols: np.ndarray, *, floor: float | None = None
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(j, top, positives)`` for each column ``j`` in ``cols``.

    ``positives`` are the sorted scores of the column's positive products;
    ``top`` the sorted scores that reach the lowest positive score (or
    ``floor``, when lower).  Counting the scores >= t in ``top`` is then right
    for any t >= that bound, and a good model, whose positives score high,
    leaves few scores to sort.  Every column needs at least one positive.
    Columns are gathered in blocks so that memory stays near
    ``n_products * _SORT_BLOCK`` scores.
    """
    for start in range(0, len(cols), _SORT_BLOCK):
        block = cols[start : start + _SORT_BLOCK]
        scores = _transposed_columns(p, block)
        labels = _transposed_columns(y, block)
        for k, j in enumerate(block):
            positives = np.sort(scores[k][labels[k]])
            bound = positives[0] if floor is None else min(floor, positives[0])
            top = scores[k][scores[k] >= bound]
            top.sort()
            yield int(j), top, positives


def _transposed_columns(matrix: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``matrix[:, cols].T`` as a C-contiguous array."""
    # Gathering a few thousand rows at a time keeps the strided reads in
    # cache; one fancy-indexed gather of every row is about twice as slow.
    n_rows = matrix.shape[0]
    out = np.empty((len(cols), n_rows), dtype=matrix.dtype)
    for start in range(0, n_rows, _ROW_CHUNK):
        stop = start + _ROW_CHUNK
        out[:, start:stop] = matrix[start:stop, cols].T
    return out


def _best_threshold(cand: np.ndarray, f1: np.ndarray, default: float) -> float:
    best = f1.max()
    if best <= 0:
        return default
    # Float sums can differ in the last bit for equal F1 values.
    tied = f1 >= best - 1e-12
    distance = np.where(tied, np.abs(cand - default), np.inf)
    closest = tied & (distance <= distance.min() + 1e-12)
    return float(cand[closest].max())


def _decide(p: np.ndarray, thr: np.ndarray, taxonomy: Taxonomy) -> np.ndarray:
    """Thresholded decisions, closed under ancestors, as a bool matrix."""
    return _close(p >= thr, taxonomy)


def _close(labels: np.ndarray, taxonomy: Taxonomy) -> np.ndarray:
    """The bool matrix with every ancestor of a set cell set too."""
    # Column-major so each column update is one contiguous pass; deepest
    # categories first, so a grandchild reaches its grandparent through its
    # parent.
    out = np.array(labels, dtype=bool, order="F", copy=True)
    parents = taxonomy.parent_index
    for j in np.argsort(-taxonomy.depths, kind="stable"):
        if parents[j] >= 0:
            out[:, parents[j]] |= out[:, j]
    return out


# -- input checks -------------------------------------------------------------


def _check_pair(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = _check_labels(y_true)
    p = _check_probs(probs)
    if y.shape != p.shape:
        raise EvaluationError(
            f"y_true and probs must have the same shape (n_products, "
            f"n_categories); got y_true {y.shape} and probs {p.shape}"
        )
    return y, p


def _check_2d(name: str, values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 2:
        raise EvaluationError(
            f"{name} must be a 2-D array of shape (n_products, n_categories); "
            f"got shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise EvaluationError(f"{name} has no rows; there are no products to score")
    return arr


def _first_bad(mask: np.ndarray) -> tuple[int, int]:
    row, col = np.unravel_index(int(np.argmax(mask)), mask.shape)
    return int(row), int(col)


def _check_labels(y_true: np.ndarray) -> np.ndarray:
    y = _check_2d("y_true", y_true)
    if y.dtype == bool:
        return y
    if not np.issubdtype(y.dtype, np.number):
        raise EvaluationError(f"y_true must hold 0/1 numbers; got dtype {y.dtype}")
    # Two reductions settle integer matrices without a full-size mask.
    if np.issubdtype(y.dtype, np.integer) and y.min() >= 0 and y.max() <= 1:
        return y.astype(bool)
    bad = (y != 0) & (y != 1)
    if bad.any():
        row, col = _first_bad(bad)
        raise EvaluationError(
            f"y_true must hold only 0 and 1; got {y[row, col].item()!r} at row {row}, "
            f"column {col}"
        )
    return y.astype(bool)


def _check_probs(probs: np.ndarray) -> np.ndarray:
    p = _check_2d("probs", probs)
    if not np.issubdtype(p.dtype, np.floating):
        if not np.issubdtype(p.dtype, np.number) or p.dtype == bool:
            raise EvaluationError(
                f"probs must hold probabilities in [0, 1]; got dtype {p.dtype}"
            )
        p = p.astype(np.float64)
    # min/max propagate NaN, so one pass over the matrix catches NaN too.
    lo, hi = p.min(), p.max()
    if not (lo >= 0 and hi <= 1):
        row, col = _first_bad(~((p >= 0) & (p <= 1)))
        raise EvaluationError(
            f"probs must lie in [0, 1]; got {float(p[row, col])!r} at row {row}, "
            f"column {col}. Pass probabilities (e.g. a sigmoid of the scores), "
            "not raw scores"
        )
    return p


def _check_columns(name: str, values: np.ndarray, taxonomy: Taxonomy) -> None:
    if values.shape[1] != len(taxonomy):
        raise EvaluationError(
            f"{name} has {values.shape[1]} columns but the taxonomy has "
            f"{len(taxonomy)} categories; column j must be taxonomy.ids[j]"
        )


def _check_unit_float(name: str, value: float) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise EvaluationError(
            f"{name} must be a number in [0, 1]; got {value!r}"
        ) from None
    if not 0 <= out <= 1:
        raise EvaluationError(f"{name} must be in [0, 1]; got {value!r}")
    return out


def _check_grid(grid: Sequence[float] | np.ndarray | str | None) -> np.ndarray | None:
    """The candidate thresholds, sorted; None means each category's observed
    positive scores."""
    if grid is None:
        return DEFAULT_GRID
    if isinstance(grid, str):
        if grid != OBSERVED:
            raise EvaluationError(
                f"grid must be None, {OBSERVED!r} or a sequence of thresholds in "
                f"[0, 1]; got {grid!r}"
            )
        return None
    try:
        cand = np.asarray(grid, dtype=np.float64)
    except (TypeError, ValueError):
        raise EvaluationError(
            f"grid must be a sequence of thresholds in [0, 1]; got {grid!r}"
        ) from None
    if cand.ndim != 1 or cand.size == 0:
        raise EvaluationError(
            f"grid must be a non-empty 1-D sequence of thresholds; got shape "
            f"{cand.shape}"
        )
    outside = ~((cand >= 0) & (cand <= 1))
    if outside.any():
        raise EvaluationError(
            f"grid thresholds must be in [0, 1]; got {cand[outside][:3].tolist()}"
        )
    return np.unique(cand)


def _check_thresholds(
    thresholds: np.ndarray | Sequence[float] | float, n_categories: int
) -> np.ndarray:
    try:
        thr = np.asarray(thresholds, dtype=np.float64)
    except (TypeError, ValueError):
        raise EvaluationError(
            f"thresholds must be a number or one number per category; got "
            f"{thresholds!r}"
        ) from None
    if thr.ndim == 0:
        thr = np.full(n_categories, float(thr))
    if thr.shape != (n_categories,):
        raise EvaluationError(
            f"thresholds must have shape ({n_categories},), one per category; got "
            f"shape {thr.shape}"
        )
    if not np.all(np.isfinite(thr)):
        j = int(np.argmax(~np.isfinite(thr)))
        raise EvaluationError(
            f"thresholds must be finite numbers; got {thr[j]} for column {j}"
        )
    return thr
