"""Composing the page of (product, category) items shown to labelers.

Each category's label budget is split over the strategies by their shares:

* ``random``: a uniform sample of the products not yet labeled for the class;
* ``disagreement``: the products whose image and text models disagree most,
  ``|P_image(c) - P_text(c)|``;
* ``uncertainty``: ``factor * k`` candidates whose ensemble prediction is most
  uncertain (binary entropy of ``P_model(c)``), sampled down to ``k``;
* ``combined_product`` / ``combined_average``: the products with the highest
  :func:`combined_score` of disagreement and entropy.

A product is queued once, and the first pick of it wins.  The order of
picking: random for every category first (in column order), so that its
sample stays a uniform sample of the pool, since the next iteration scores
model-R and model-A on it; then category by category in column order, each
running its other strategies in :data:`PRIORITY` order (so a category's
columns are read once, the slow part at scale).
When a later pick would have chosen a product already queued for another
category, that category is added to the item's ``also_for`` and the pick takes
the next product instead.  A strategy that runs out of candidates for a class
hands its labels to the class's other strategies (in proportion to their
shares); a class that runs out of products hands its labels to the other
classes (in proportion to their budgets).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from numbers import Real

import numpy as np
import pandas as pd

from raycat.active.budget import largest_remainder, split_by_shares
from raycat.active.errors import ActiveLearningError

logger = logging.getLogger(__name__)

STRATEGIES: tuple[str, ...] = (
    "random",
    "disagreement",
    "uncertainty",
    "combined_product",
    "combined_average",
)
# Within a category, the order of picking, hence which strategy keeps a
# product that two strategies pick (random always picks first).
PRIORITY = STRATEGIES
# Strategies that need both P_text and P_image.
NEEDS_TEXT_AND_IMAGE = frozenset(
    {"disagreement", "combined_product", "combined_average"}
)
DEFAULT_SHARES: dict[str, float] = {
    "random": 0.5,
    "disagreement": 0.25,
    "uncertainty": 0.25,
}
PAGE_COLUMNS: tuple[str, ...] = (
    "product_id",
    "category",
    "strategy",
    "score",
    "p_model",
    "p_text",
    "p_image",
    "entropy",
    "disagreement",
    "threshold",
    "rule_positive",
    "also_for",
)
# Probabilities are clipped to [EPS, 1 - EPS] before any logarithm.
EPS = 1e-7
# Rows checked at a time, so validating a 10^6 x 10^3 matrix stays in memory.
_CHUNK_ROWS = 1 << 16

Pairs = pd.DataFrame | Iterable[tuple[str, str]]


def plain(value: object) -> object:
    """A numpy scalar as the Python value it holds, for readable messages."""
    return value.item() if isinstance(value, np.generic) else value


def check_shares(
    shares: Mapping[str, float], *, where: str = "shares"
) -> dict[str, float]:
    """Validate strategy shares; return them in :data:`PRIORITY` order."""
    unknown = sorted(set(shares) - set(STRATEGIES))
    if unknown:
        raise ActiveLearningError(
            f"{where} names unknown strategy {unknown[0]!r}; the strategies are "
            f"{', '.join(STRATEGIES)}"
        )
    for name, value in shares.items():
        if not (isinstance(value, Real) and math.isfinite(value) and value >= 0):
            raise ActiveLearningError(
                f"{where}.{name} must be a number >= 0; got {value!r}"
            )
    total = float(sum(shares.values()))
    if abs(total - 1.0) > 1e-6:
        raise ActiveLearningError(
            f"{where} must add up to 1; got {total:.6g} from {dict(shares)}. Scale "
            "them, e.g. random: 0.5, disagreement: 0.25, uncertainty: 0.25"
        )
    return {s: float(shares[s]) for s in PRIORITY if s in shares}


def binary_entropy(p: np.ndarray | float) -> np.ndarray:
    """Entropy in bits of a Bernoulli(p) prediction: 1 at p = 0.5, ~0 at 0 or 1."""
    q = np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0 - EPS)
    return -(q * np.log2(q) + (1.0 - q) * np.log2(1.0 - q))


def combined_score(
    disagreement: np.ndarray | float, entropy: np.ndarray | float, how: str
) -> np.ndarray:
    """Combine disagreement and entropy into one score, by product or average.

    Both inputs already lie in [0, 1] (``|P_image - P_text|`` and the entropy
    in bits), so they are combined as they are: rescaling by a class's maximum
    would make an item's score depend on the rest of the pool.  ``how`` is
    ``product`` (both must be high) or ``average`` (either may carry it).
    """
    d = np.asarray(disagreement, dtype=np.float64)
    h = np.asarray(entropy, dtype=np.float64)
    if how == "product":
        return d * h
    if how == "average":
        return (d + h) / 2.0
    raise ActiveLearningError(
        f"combined_score: how must be 'product' or 'average'; got {how!r}"
    )


def thresholds_array(
    thresholds: float | Mapping[str, float] | Sequence[float] | np.ndarray,
    categories: Sequence[str],
) -> np.ndarray:
    """One decision threshold per category, from a number, a mapping or a list."""
    if isinstance(thresholds, int | float):
        out = np.full(len(categories), float(thresholds))
    elif isinstance(thresholds, Mapping):
        missing = [c for c in categories if c not in thresholds]
        if missing:
            raise ActiveLearningError(
                f"thresholds has no entry for category {missing[0]!r} ({len(missing)}"
                " missing); give every category a threshold or pass one number"
            )
        out = np.asarray([thresholds[c] for c in categories], dtype=np.float64)
    else:
        out = np.asarray(thresholds, dtype=np.float64)
        if out.shape != (len(categories),):
            raise ActiveLearningError(
                f"thresholds has shape {out.shape}; expected one per category "
                f"({len(categories)},) or a single number"
            )
    if out.size and not ((out > 0) & (out < 1)).all():
        raise ActiveLearningError(
            f"thresholds must lie strictly between 0 and 1; got {out.min()} to "
            f"{out.max()}"
        )
    return out


def _check_probabilities(
    name: str,
    p: np.ndarray,
    product_ids: np.ndarray,
    categories: Sequence[str],
    *,
    allow_nan: bool,
) -> None:
    if p.ndim != 2 or p.shape != (len(product_ids), len(categories)):
        raise ActiveLearningError(
            f"{name} has shape {p.shape}; expected (products, categories) = "
            f"({len(product_ids)}, {len(categories)}), columns in categories order"
        )
    for start in range(0, p.shape[0], _CHUNK_ROWS):
        chunk = p[start : start + _CHUNK_ROWS]
        bad = ~((chunk >= 0) & (chunk <= 1))
        if allow_nan:
            bad &= ~np.isnan(chunk)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            value = chunk[r, c]
            hint = "" if allow_nan else " (NaN is not allowed here)"
            raise ActiveLearningError(
                f"{name} is {value} for product {plain(product_ids[start + r])!r}, "
                f"category {categories[c]!r}; probabilities must lie in [0, 1]{hint}"
            )


def _pair_index(
    pairs: Pairs | None,
    what: str,
    products: pd.Index,
    categories: pd.Index,
) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) indices of (product_id, category) pairs inside the page."""
    if pairs is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if isinstance(pairs, pd.DataFrame):
        missing = {"product_id", "category"} - set(pairs.columns)
        if missing:
            raise ActiveLearningError(
                f"{what} needs columns product_id and category; it lacks "
                f"{', '.join(sorted(missing))} (has {list(pairs.columns)})"
            )
        frame = pairs[["product_id", "category"]]
    else:
        rows = list(pairs)
        bad = next((r for r in rows if not isinstance(r, tuple) or len(r) != 2), None)
        if bad is not None:
            raise ActiveLearningError(
                f"{what} must hold (product_id, category) pairs; got {bad!r}"
            )
        frame = pd.DataFrame(rows, columns=["product_id", "category"])
    row = products.get_indexer(frame["product_id"])
    col = categories.get_indexer(frame["category"])
    unknown_cat = col < 0
    if unknown_cat.any():
        logger.warning(
            "ignoring %d %s pairs whose category is not on the page, e.g. %r",
            int(unknown_cat.sum()),
            what,
            plain(frame["category"].to_numpy()[unknown_cat][0]),
        )
    # Products outside this pool are simply not candidates.
    keep = (row >= 0) & ~unknown_cat
    return row[keep].astype(np.int64), col[keep].astype(np.int64)


class _Composer:
    """The mutable state of one page: who took which product, and the picks."""

    def __init__(
        self,
        p_model: np.ndarray,
        p_text: np.ndarray | None,
        p_image: np.ndarray | None,
        labeled: tuple[np.ndarray, np.ndarray],
        factor: float,
        rng: np.random.Generator,
    ) -> None:
        self.p_model = p_model
        self.p_text = p_text
        self.p_image = p_image
        self.factor = factor
        self.rng = rng
        n, n_cat = p_model.shape
        rows, cols = labeled
        order = np.argsort(cols, kind="stable")
        bounds = np.searchsorted(cols[order], np.arange(n_cat + 1))
        self.labeled = [rows[order[bounds[c] : bounds[c + 1]]] for c in range(n_cat)]
        # Category index that queued each product; -1 while it is free.
        self.taken_by = np.full(n, -1, dtype=np.int64)
        self.n_taken = 0
        self.picks: list[tuple[np.ndarray, int, str, np.ndarray]] = []
        self.also_for: dict[int, list[int]] = {}
        # Entropy and disagreement of the class last scored: reading a column
        # of a row-major matrix is the slow part, so it is read once per class.
        self._cached: tuple[int, dict[str, np.ndarray]] = (-1, {})

    def _columns(self, c: int) -> dict[str, np.ndarray]:
        if self._cached[0] != c:
            cols = {"entropy": binary_entropy(self.p_model[:, c])}
            if self.p_text is not None and self.p_image is not None:
                image = self.p_image[:, c].astype(np.float64)
                cols["disagreement"] = np.abs(image - self.p_text[:, c])
            self._cached = (c, cols)
        return self._cached[1]

    def score(self, c: int, strategy: str) -> np.ndarray:
        """The strategy's score for class c; -inf where a product is no candidate."""
        if strategy == "random":
            score = np.zeros(self.p_model.shape[0])
        else:
            cols = self._columns(c)
            if strategy == "uncertainty":
                score = cols["entropy"].copy()
            elif strategy == "disagreement":
                score = cols["disagreement"].copy()
            else:
                how = strategy.removeprefix("combined_")
                score = combined_score(cols["disagreement"], cols["entropy"], how)
            score[np.isnan(score)] = -np.inf
        score[self.labeled[c]] = -np.inf
        return score

    def pick(self, c: int, strategy: str, k: int) -> int:
        """Queue up to k new products for class c; return how many it queued.

        The strategy first picks as if no product were queued yet; products it
        picked that another class queued get c in their ``also_for``, and the
        strategy's next choices replace them.
        """
        if k <= 0:
            return 0
        score = self.score(c, strategy)
        if strategy == "random":
            pool = np.flatnonzero(np.isfinite(score))
            would = self._sample(pool, k)
        else:
            # The best (size + n_taken) hold at least `size` free products.
            size = math.ceil(self.factor * k) if strategy == "uncertainty" else k
            pool = _top(score, size + self.n_taken)
            would = pool[:size]
            if strategy == "uncertainty":
                would = self._sample(would, k)
        owner = self.taken_by[would]
        for row in would[(owner >= 0) & (owner != c)]:
            others = self.also_for.setdefault(int(row), [])
            if c not in others:
                others.append(c)
        fresh = would[owner < 0]
        self.taken_by[fresh] = c

        if fresh.size < k:
            free = pool[self.taken_by[pool] < 0]
            if strategy == "random":
                more = self._sample(free, k - fresh.size)
            elif strategy == "uncertainty":
                need = k - fresh.size
                more = self._sample(free[: math.ceil(self.factor * need)], need)
            else:
                more = free[: k - fresh.size]
            self.taken_by[more] = c
            fresh = np.concatenate([fresh, more])
        if fresh.size == 0:
            return 0
        self.n_taken += fresh.size
        own = np.full(fresh.size, np.nan) if strategy == "random" else score[fresh]
        self.picks.append((fresh, c, strategy, own))
        return int(fresh.size)

    def _sample(self, pool: np.ndarray, k: int) -> np.ndarray:
        k = min(k, pool.size)
        if k <= 0:
            return np.zeros(0, dtype=np.int64)
        return self.rng.choice(pool, size=k, replace=False)


def _top(score: np.ndarray, k: int) -> np.ndarray:
    """Rows of the k highest finite scores, best first (ties to the lower row)."""
    k = min(k, int(np.isfinite(score).sum()))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.argpartition(-score, k - 1)[:k] if k < score.size else np.arange(k)
    return idx[np.lexsort((idx, -score[idx]))]


def compose_page(
    product_ids: Sequence[str] | np.ndarray,
    p_model: np.ndarray,
    *,
    categories: Sequence[str],
    budgets: Sequence[int] | np.ndarray | Mapping[str, int],
    p_text: np.ndarray | None = None,
    p_image: np.ndarray | None = None,
    shares: Mapping[str, float] | None = None,
    labeled: Pairs | None = None,
    rule_positive: Pairs | None = None,
    thresholds: float | Mapping[str, float] | Sequence[float] = 0.5,
    seed: int = 0,
    uncertainty_candidates_factor: float = 3.0,
) -> pd.DataFrame:
    """Pick the (product, category) items of one labeling iteration.

    Parameters
    ----------
    product_ids
        The pool, one id per row of the probability matrices; unique.
    p_model
        Ensemble probabilities, shape (products, categories).
    categories
        Category ids in column order (e.g. ``taxonomy.ids``).
    budgets
        Labels per category (e.g. from :func:`class_budget`), as a list in
        column order or a mapping by id (missing ids get 0).  The page has
        ``sum(budgets)`` items when the pool allows; a warning says when not.
    p_text, p_image
        Text-only and image-only probabilities; NaN where a model has no
        prediction (such products are no disagreement candidates).  Without
        both, strategies that need them get no labels and their share goes
        to the others (a warning).
    shares
        Fraction of each class's budget per strategy (see :data:`STRATEGIES`);
        default :data:`DEFAULT_SHARES`.
    labeled
        (product_id, category) pairs already labeled: never queued again.
        A frame with columns product_id and category, or an iterable of pairs.
    rule_positive
        Pairs the old system's rules put in that category; recorded on the
        queued items as ``rule_positive``.
    thresholds
        Decision threshold per category (a number, mapping or list); recorded
        as ``threshold`` so that the later surprise analysis can use it.
    seed
        Seeds the random and uncertainty sampling; same inputs, same page.
    uncertainty_candidates_factor
        The uncertainty strategy samples its k items from the ``factor * k``
        most uncertain products of the class.

    Returns
    -------
    pandas.DataFrame
        One row per queued product, columns :data:`PAGE_COLUMNS`: the class
        and strategy that picked it, the strategy's score (entropy in bits,
        disagreement, or combined score; NaN for random), the three
        probabilities, entropy and disagreement (NaN where unknown), the
        threshold, whether the rules put it in the class, and ``also_for``,
        the other classes that would have picked it.  Rows follow pick order
        (priority, then class); shuffle before showing them to labelers so
        that the order does not reveal the strategy.
    """
    ids = np.asarray(product_ids)
    products = pd.Index(ids)
    if not products.is_unique:
        dup = products[products.duplicated()][0]
        raise ActiveLearningError(
            f"product_ids must be unique; {dup!r} appears more than once. Deduplicate "
            "the pool before composing a page"
        )
    cats = list(categories)
    cat_index = pd.Index(cats)
    if not cat_index.is_unique:
        dup = plain(cat_index[cat_index.duplicated()][0])
        raise ActiveLearningError(
            f"categories must be unique; {dup!r} appears more than once"
        )
    p_model = np.asarray(p_model)
    _check_probabilities("p_model", p_model, ids, cats, allow_nan=False)
    if p_text is not None:
        p_text = np.asarray(p_text)
        _check_probabilities("p_text", p_text, ids, cats, allow_nan=True)
    if p_image is not None:
        p_image = np.asarray(p_image)
        _check_probabilities("p_image", p_image, ids, cats, allow_nan=True)
    budget = _budget_array(budgets, cats)
    share = _usable_shares(
        check_shares(DEFAULT_SHARES if shares is None else shares),
        has_pair=p_text is not None and p_image is not None,
        missing=" and ".join(
            name for name, p in (("p_text", p_text), ("p_image", p_image)) if p is None
        ),
    )
    if uncertainty_candidates_factor < 1:
        raise ActiveLearningError(
            "uncertainty_candidates_factor must be >= 1 (the candidates must be at "
            f"least as many as the labels drawn from them); got "
            f"{uncertainty_candidates_factor}"
        )
    threshold = thresholds_array(thresholds, cats)
    labeled_idx = _pair_index(labeled, "labeled", products, cat_index)
    rule_idx = _pair_index(rule_positive, "rule_positive", products, cat_index)

    # Pass 1: every (strategy, class) takes its quota.
    composer = _Composer(
        p_model,
        p_text,
        p_image,
        labeled_idx,
        uncertainty_candidates_factor,
        np.random.default_rng(seed),
    )
    names = list(share)
    weights = np.asarray([share[s] for s in names])
    quota = split_by_shares(budget, weights)
    exhausted = np.zeros_like(quota, dtype=bool)
    short = np.zeros(len(cats), dtype=np.int64)
    # Random first, for every class, so that its sample stays uniform; then the
    # other strategies class by class, so each class's columns are read once.
    plan = [
        (c, j)
        for j in range(len(names))
        if names[j] == "random"
        for c in range(len(cats))
    ]
    plan += [
        (c, j)
        for c in range(len(cats))
        for j in range(len(names))
        if names[j] != "random"
    ]
    for c, j in plan:
        got = composer.pick(c, names[j], int(quota[c, j]))
        exhausted[c, j] = got < quota[c, j]
        short[c] += quota[c, j] - got

    # Pass 2: a strategy's shortfall goes to the class's other strategies.
    moved = int(short.sum())
    for c in np.flatnonzero(short):
        short[c] = _fill_class(composer, c, int(short[c]), names, weights, exhausted)

    # Pass 3: a class's shortfall goes to the classes that still have products.
    left = int(short.sum())
    while left > 0:
        open_ = np.flatnonzero((~exhausted & (weights > 0)).any(axis=1))
        if open_.size == 0:
            break
        w = budget[open_].astype(np.float64)
        w = w / w.sum() if w.sum() > 0 else np.full(open_.size, 1.0 / open_.size)
        give = largest_remainder(w, left)
        left = sum(
            _fill_class(composer, int(c), int(g), names, weights, exhausted)
            for c, g in zip(open_, give, strict=True)
            if g > 0
        )

    page = _page_frame(
        composer, ids, cats, p_model, p_text, p_image, threshold, rule_idx
    )
    n = int(budget.sum())
    if moved:
        logger.info(
            "compose_page: %d labels moved to other strategies or classes whose "
            "own candidates ran out",
            moved - left,
        )
    if len(page) < n:
        logger.warning(
            "compose_page: the page has %d of %d items; the pool of %d products "
            "has no more unlabeled candidates (add products to the pool or lower "
            "labels_per_iteration)",
            len(page),
            n,
            len(ids),
        )
    return page


def _budget_array(
    budgets: Sequence[int] | np.ndarray | Mapping[str, int], cats: list[str]
) -> np.ndarray:
    if isinstance(budgets, Mapping):
        unknown = sorted(set(budgets) - set(cats))
        if unknown:
            raise ActiveLearningError(
                f"budgets names category {unknown[0]!r}, which is not among the "
                "page's categories; key budgets by the ids in categories"
            )
        values = np.asarray([budgets.get(c, 0) for c in cats])
    else:
        values = np.asarray(budgets)
    if values.shape != (len(cats),):
        raise ActiveLearningError(
            f"budgets has shape {values.shape}; expected one per category "
            f"({len(cats)},)"
        )
    if values.size and (not np.all(np.equal(np.mod(values, 1), 0)) or values.min() < 0):
        raise ActiveLearningError(
            f"budgets must be whole numbers >= 0; got {values.tolist()!r:.120}. "
            "Use class_budget to round shares to labels"
        )
    return values.astype(np.int64)


def _usable_shares(
    share: dict[str, float], *, has_pair: bool, missing: str
) -> dict[str, float]:
    """Drop strategies that need P_text and P_image when one is missing."""
    if has_pair:
        return share
    dropped = {s: v for s, v in share.items() if s in NEEDS_TEXT_AND_IMAGE and v > 0}
    if not dropped:
        return share
    kept = {s: v for s, v in share.items() if s not in NEEDS_TEXT_AND_IMAGE}
    total = sum(kept.values())
    if total <= 0:
        raise ActiveLearningError(
            f"shares put every label on {', '.join(dropped)}, which need both "
            f"p_text and p_image, but {missing} not given; pass both or give "
            "random or uncertainty a share"
        )
    logger.warning(
        "compose_page: %s not given, so %s (share %.3g) has no candidates; its "
        "labels go to %s",
        missing,
        " and ".join(dropped),
        sum(dropped.values()),
        " and ".join(s for s, v in kept.items() if v > 0),
    )
    return {s: v / total for s, v in kept.items()}


def _fill_class(
    composer: _Composer,
    c: int,
    k: int,
    names: list[str],
    weights: np.ndarray,
    exhausted: np.ndarray,
) -> int:
    """Give k more labels of class c to its strategies that still have
    candidates, in proportion to their shares; return how many are left."""
    while k > 0:
        active = np.flatnonzero(~exhausted[c] & (weights > 0))
        if active.size == 0:
            break
        ask = largest_remainder(weights[active] / weights[active].sum(), k)
        for j, a in zip(active, ask, strict=True):
            got = composer.pick(c, names[j], int(a))
            exhausted[c, j] |= got < a
            k -= got
    return k


def _page_frame(
    composer: _Composer,
    ids: np.ndarray,
    cats: list[str],
    p_model: np.ndarray,
    p_text: np.ndarray | None,
    p_image: np.ndarray | None,
    threshold: np.ndarray,
    rule_idx: tuple[np.ndarray, np.ndarray],
) -> pd.DataFrame:
    if not composer.picks:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in PAGE_COLUMNS})
    rows = np.concatenate([p[0] for p in composer.picks])
    cols = np.concatenate([np.full(p[0].size, p[1]) for p in composer.picks])
    strategy = np.concatenate([np.full(p[0].size, p[2]) for p in composer.picks])
    score = np.concatenate([p[3] for p in composer.picks])
    pm = p_model[rows, cols].astype(np.float64)
    nan = np.full(rows.size, np.nan)
    pt = nan if p_text is None else p_text[rows, cols].astype(np.float64)
    pi = nan if p_image is None else p_image[rows, cols].astype(np.float64)
    n_cat = len(cats)
    rule_keys = rule_idx[0] * n_cat + rule_idx[1]
    cat_arr = np.asarray(cats, dtype=object)
    return pd.DataFrame(
        {
            "product_id": ids[rows],
            "category": cat_arr[cols],
            "strategy": strategy,
            "score": score,
            "p_model": pm,
            "p_text": pt,
            "p_image": pi,
            "entropy": binary_entropy(pm),
            "disagreement": np.abs(pi - pt),
            "threshold": threshold[cols],
            "rule_positive": np.isin(rows * n_cat + cols, rule_keys),
            "also_for": [
                [cats[j] for j in composer.also_for.get(int(r), [])] for r in rows
            ],
        }
    )
