"""How many of an iteration's labels each category gets.

A category's share is proportional to its error on validation, ``1 - F1``,
optionally multiplied by a term of its depth that prefers deeper (more
specific) categories; the labels are then handed out by the largest
remainder method, so the budgets always add up to exactly ``n``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Literal, get_args

import numpy as np

from raycat.active.errors import ActiveLearningError
from raycat.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

DepthTerm = Literal["none", "inverse", "inverse_log", "sigmoid_inverse_log"]
DEPTH_TERMS: tuple[str, ...] = get_args(DepthTerm)


def depth_factor(
    depths: Sequence[int] | np.ndarray, term: DepthTerm, weight: float
) -> np.ndarray:
    """The multiplier that the depth preference puts on each category's share.

    With depth ``y`` (1 = top level) and weight ``x`` in [0, 1]:

    * ``none``: 1 everywhere;
    * ``inverse``: ``1 - x / y``;
    * ``inverse_log``: ``1 - x / ln(y)`` for ``y >= 2``.  Depth 1 gets the
      limit of the term as ``y`` falls to 1, clipped: 0 when ``x > 0`` (top
      levels are left out; their labels follow from the ancestors of deeper
      labels anyway) and 1 when ``x == 0``;
    * ``sigmoid_inverse_log``: the logistic sigmoid of the ``inverse_log``
      term, which grows smoothly with depth instead of jumping from 0; depth
      1 again gets the limit (0 when ``x > 0``, ``sigmoid(1)`` when
      ``x == 0``).

    Negative values are clipped to 0: such a category gets no labels.
    """
    if term not in DEPTH_TERMS:
        raise ActiveLearningError(
            f"depth_term must be one of {', '.join(DEPTH_TERMS)}; got {term!r}"
        )
    if not 0.0 <= weight <= 1.0:
        raise ActiveLearningError(
            f"depth_weight must be between 0 and 1; got {weight!r}. It is the x in "
            "the depth term 1 - x/log(y): 0 turns the preference off, 1 is the "
            "strongest"
        )
    y = np.asarray(depths, dtype=np.float64)
    if y.ndim != 1 or (y.size and (not np.isfinite(y).all() or y.min() < 1)):
        raise ActiveLearningError(
            "depths must be a 1-D array of category depths >= 1 (1 = top level); "
            f"got {np.asarray(depths)!r:.120}"
        )

    if term == "none":
        return np.ones_like(y)
    if term == "inverse":
        return np.clip(1.0 - weight / y, 0.0, None)

    deep = y >= 2
    raw = np.empty_like(y)
    raw[deep] = 1.0 - weight / np.log(y[deep])
    # The term's limit at depth 1: -inf for any positive weight, 1 without one.
    raw[~deep] = 1.0 if weight == 0 else -np.inf
    if term == "inverse_log":
        return np.clip(raw, 0.0, None)
    return 1.0 / (1.0 + np.exp(-raw))


def largest_remainder(shares: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    """Round ``shares * n`` to integers that add up to exactly ``n``.

    ``shares`` must be non-negative and sum to 1.  Each entry gets the floor of
    its quota; the labels left over go one each to the largest fractional
    parts, ties to the lower index.
    """
    s = np.asarray(shares, dtype=np.float64)
    if s.size and (not np.isfinite(s).all() or s.min() < 0 or abs(s.sum() - 1) > 1e-6):
        raise ActiveLearningError(
            f"shares must be non-negative and add up to 1; got {s.tolist()!r:.120}"
        )
    if n < 0:
        raise ActiveLearningError(f"the number of labels must be >= 0; got {n}")
    if s.size == 0:
        if n:
            raise ActiveLearningError(f"cannot hand out {n} labels over no entries")
        return np.zeros(0, dtype=np.int64)
    quota = s * n
    out = np.floor(quota).astype(np.int64)
    left = n - int(out.sum())
    if left > 0:
        order = np.argsort(-(quota - out), kind="stable")
        out[order[:left]] += 1
    return out


def class_shares(
    f1: Sequence[float] | np.ndarray,
    *,
    depths: Sequence[int] | np.ndarray | None = None,
    depth_term: DepthTerm = "none",
    depth_weight: float = 0.0,
    categories: Sequence[str] | None = None,
) -> np.ndarray:
    """Each category's share of the labels, from its validation F1.

    The share is ``1 - F1`` normalized over all categories, times
    :func:`depth_factor`, normalized again.  When every F1 is 1 there is no
    error to follow and the shares are uniform (logged); when the depth term
    zeroes every category that has an error, it is dropped (a warning).
    ``categories`` only names the offending category in errors.
    """
    f = np.asarray(f1, dtype=np.float64)
    if f.ndim != 1:
        raise ActiveLearningError(
            f"f1 must be a 1-D array with one F1 per category; got shape {f.shape}"
        )

    def name(i: int) -> str:
        return repr(categories[i]) if categories is not None else f"at index {i}"

    bad = np.flatnonzero(np.isnan(f))
    if bad.size:
        raise ActiveLearningError(
            f"F1 of category {name(int(bad[0]))} is NaN ({bad.size} NaN in all); "
            "give categories without validation examples an explicit F1 (0 to "
            "favour them, 1 to skip them)"
        )
    bad = np.flatnonzero((f < 0) | (f > 1))
    if bad.size:
        i = int(bad[0])
        raise ActiveLearningError(
            f"F1 of category {name(i)} is {f[i]}, outside [0, 1]; pass F1 scores, "
            "not percentages or counts"
        )
    if depth_term != "none" and depths is None:
        raise ActiveLearningError(
            f"depth_term={depth_term!r} needs the category depths; pass depths "
            "(e.g. taxonomy.depths) or set depth_term to 'none'"
        )
    if depths is not None and len(depths) != f.size:
        raise ActiveLearningError(
            f"depths has {len(depths)} entries but f1 has {f.size}; pass one "
            "depth per category, in the same order"
        )
    if f.size == 0:
        return np.zeros(0)

    error = 1.0 - f
    if error.sum() <= 0:
        logger.info(
            "every category has F1 = 1 on validation; sharing the labels uniformly"
        )
        return np.full(f.size, 1.0 / f.size)
    if depths is None:
        weighted = error
    else:
        weighted = error * depth_factor(depths, depth_term, depth_weight)
    if weighted.sum() <= 0:
        logger.warning(
            "depth_term=%r with depth_weight=%s gives every category that has an "
            "error a zero share; ignoring the depth term this iteration (lower "
            "depth_weight to keep it)",
            depth_term,
            depth_weight,
        )
        weighted = error
    return weighted / weighted.sum()


def class_budget(
    f1: Sequence[float] | np.ndarray,
    n: int,
    *,
    depths: Sequence[int] | np.ndarray | None = None,
    depth_term: DepthTerm = "none",
    depth_weight: float = 0.0,
    categories: Sequence[str] | None = None,
) -> np.ndarray:
    """The number of labels per category, summing to exactly ``n``.

    See :func:`class_shares` for the shares and :func:`largest_remainder` for
    the rounding.

    Examples
    --------
    >>> class_budget([0.5, 0.75, 1.0, 0.0], 10).tolist()
    [3, 1, 0, 6]
    """
    shares = class_shares(
        f1,
        depths=depths,
        depth_term=depth_term,
        depth_weight=depth_weight,
        categories=categories,
    )
    return largest_remainder(shares, n)


def class_budget_by_id(
    f1: Mapping[str, float],
    n: int,
    *,
    taxonomy: Taxonomy | None = None,
    depth_term: DepthTerm = "none",
    depth_weight: float = 0.0,
) -> dict[str, int]:
    """:func:`class_budget` keyed by category id; depths come from ``taxonomy``."""
    ids = list(f1)
    depths = None
    if taxonomy is not None:
        unknown = [cid for cid in ids if cid not in taxonomy]
        if unknown:
            raise ActiveLearningError(
                f"f1 names {len(unknown)} categories the taxonomy lacks, first "
                f"{unknown[0]!r}; key f1 by taxonomy ids"
            )
        depths = [taxonomy.depth(cid) for cid in ids]
    budget = class_budget(
        [f1[cid] for cid in ids],
        n,
        depths=depths,
        depth_term=depth_term,
        depth_weight=depth_weight,
        categories=ids,
    )
    return {cid: int(b) for cid, b in zip(ids, budget, strict=True)}


def split_by_shares(budgets: Sequence[int] | np.ndarray, shares: Sequence[float]):
    """Labels per (class, strategy): row ``c`` adds up to ``budgets[c]`` and
    gives each strategy the floor of its quota or one more, and each
    strategy's column adds up to its share of all the labels, to within one.

    Rounding every class on its own would hand each class of one label to the
    first strategy, so a page of many small classes would be one strategy
    only.  Here a class's leftover labels go to the strategies furthest below
    their share of the labels handed out so far (ties to the lower index).
    """
    b = np.asarray(budgets, dtype=np.int64)
    w = np.asarray(shares, dtype=np.float64)
    largest_remainder(w, 0)  # validates the shares
    ideal = np.outer(b, w)
    quota = np.floor(ideal).astype(np.int64)
    owed = ideal - quota
    debt = np.zeros(len(w))
    for c in range(len(b)):
        debt += owed[c]
        left = int(b[c] - quota[c].sum())
        if left <= 0:
            continue
        # Strategies owed a fraction here first (rounding can leave none).
        key = debt + np.where(owed[c] > 1e-9, 1e6, 0.0)
        open_ = np.flatnonzero(w > 0)
        pick = open_[np.argsort(-key[open_], kind="stable")[:left]]
        quota[c, pick] += 1
        debt[pick] -= 1
    return quota
