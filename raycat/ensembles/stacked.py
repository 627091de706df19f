"""The stacked ensemble: a logistic regression on the members' log-odds.

For category ``j`` the ensemble predicts

    P(j) = sigmoid(b_j + sum_k a_jk * logit(p_k(j)))

where ``p_k(j)`` is member ``k``'s probability.  Log-odds rather than raw
probabilities make the combiner a weighted geometric pooling, which can also
sharpen or soften members that are over- or under-confident (``a`` > 1 or < 1);
a member that is noise gets a coefficient near 0.

- Per category (the default), each category with at least ``min_positives``
  positive and negative held-out products gets its own coefficients.
- With ``shared_coefficients``, one model is fitted on (product, category) rows
  and every category uses it.  Categories too rare for their own model fall
  back to this shared model (``fallback: shared``) or to the plain average of
  the members (``fallback: average``).

The regularization strength is chosen per model by stratified cross-validation
over ``Cs`` on the held-out log loss.  The fits are a batched Newton method in
numpy: there are few features (one per member) and many categories, so all
categories are fitted at once rather than one scikit-learn model at a time.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from raycat.config import StackedEnsembleConfig
from raycat.ensembles.base import EnsembleComponent, EnsembleParams, logits

logger = logging.getLogger(__name__)

STATE = "stacked.npz"
SOURCES = ("own", "shared", "average")
# Products × categories rows of the shared model above which a seeded sample is
# used: the coefficients are a handful of numbers, and 500k rows pin them down.
MAX_SHARED_ROWS = 500_000
_NEWTON_STEPS = 50
_NEWTON_TOL = 1e-7


class StackedParams(EnsembleParams, StackedEnsembleConfig):
    """Members, seed, and the ``ensemble.stacked`` settings of the config."""


class StackedEnsemble(EnsembleComponent):
    """Per-category (or shared) logistic regression on the members' log-odds."""

    kind = "stacked"
    Params = StackedParams

    def _fit_combiner(self, stack: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        p: StackedParams = self.params
        m, n, c = stack.shape
        rng = np.random.default_rng(p.seed)
        feats = logits(stack)
        pos = y.sum(axis=0)
        enough = (pos >= p.min_positives) & (n - pos >= p.min_positives)
        own = np.zeros(c, dtype=bool) if p.shared_coefficients else enough

        self.coef_ = np.zeros((c, m))
        self.intercept_ = np.zeros(c)
        self.C_ = np.full(c, np.nan)
        source = np.full(c, SOURCES.index("average"), dtype=np.int8)

        if own.any():
            cols = np.flatnonzero(own)
            # (categories, products, members + intercept)
            x = np.concatenate(
                [feats[:, :, cols].transpose(2, 1, 0), np.ones((len(cols), n, 1))],
                axis=2,
            )
            w, chosen = _fit_cv(x, y[:, cols].T, p.Cs, p.cv, rng)
            self.coef_[cols], self.intercept_[cols] = w[:, :m], w[:, m]
            self.C_[cols] = chosen
            source[cols] = SOURCES.index("own")

        rest = ~own
        self.shared_ = None
        if rest.any() and (p.shared_coefficients or p.fallback == "shared"):
            self.shared_ = self._fit_shared(feats, y, rng)
            if self.shared_ is not None:
                w, chosen = self.shared_
                self.coef_[rest], self.intercept_[rest] = w[:m], w[m]
                self.C_[rest] = chosen
                source[rest] = SOURCES.index("shared")
        self.source_ = source

        counts = {s: int(np.sum(source == i)) for i, s in enumerate(SOURCES)}
        if not p.shared_coefficients and (counts["shared"] or counts["average"]):
            logger.info(
                "%s: %d of %d categories have fewer than %d positive or negative "
                "products for a model of their own; %d use the shared model, %d "
                "the plain average",
                self.name,
                int((~enough).sum()),
                c,
                p.min_positives,
                counts["shared"],
                counts["average"],
            )
        return {"categories": counts}

    def _fit_shared(
        self, feats: np.ndarray, y: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, float] | None:
        p: StackedParams = self.params
        m = feats.shape[0]
        x = feats.reshape(m, -1).T
        t = y.reshape(-1)
        if len(t) > MAX_SHARED_ROWS:
            keep = rng.choice(len(t), MAX_SHARED_ROWS, replace=False)
            x, t = x[keep], t[keep]
        if min(t.sum(), len(t) - t.sum()) < p.cv:
            logger.warning(
                "%s: too few positive labels (%d) for the shared model; categories "
                "without a model of their own use the plain average",
                self.name,
                int(t.sum()),
            )
            return None
        x = np.concatenate([x, np.ones((len(t), 1))], axis=1)[None]
        w, chosen = _fit_cv(x, t[None], p.Cs, p.cv, rng)
        return w[0], float(chosen[0])

    def _combine(self, stack: np.ndarray) -> np.ndarray:
        z = np.einsum("mnc,cm->nc", logits(stack), self.coef_) + self.intercept_
        out = _sigmoid(z)
        avg = self.source_ == SOURCES.index("average")
        if avg.any():
            out[:, avg] = stack[:, :, avg].mean(axis=0)
        return out

    def contributions(self) -> dict[str, dict[str, Any]]:
        # The overall figure averages the coefficients over the categories that
        # have a model; the plain-average categories weigh members equally.
        modelled = self.source_ != SOURCES.index("average")
        out = {}
        for k, name in enumerate(self.component_names):
            per = np.where(modelled, self.coef_[:, k], 1.0 / len(self.component_names))
            overall = float(self.coef_[modelled, k].mean()) if modelled.any() else 0.0
            out[name] = {"overall": overall, "per_category": per}
        return out

    def category_sources(self) -> list[str]:
        """For each category: "own", "shared" or "average"."""
        return [SOURCES[i] for i in self.source_]

    def _save_combiner(self, folder: Path) -> None:
        np.savez(
            folder / STATE,
            coef=self.coef_,
            intercept=self.intercept_,
            C=self.C_,
            source=self.source_,
        )

    def _load_combiner(self, folder: Path) -> None:
        state = np.load(folder / STATE)
        self.coef_ = state["coef"]
        self.intercept_ = state["intercept"]
        self.C_ = state["C"]
        self.source_ = state["source"]


# -- batched L2-regularized logistic regression -------------------------------------


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -35.0, 35.0)))


def _scores(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (x @ w[:, :, None])[:, :, 0]


def _objective(
    x: np.ndarray, y: np.ndarray, sw: np.ndarray, w: np.ndarray, inv_c: np.ndarray
) -> np.ndarray:
    z = _scores(x, w)
    # log(1 + exp(z)) - y z, written to stay finite for large |z|.
    loss = np.logaddexp(0.0, z) - y * z
    return np.sum(sw * loss, axis=1) + 0.5 * inv_c * np.sum(w[:, :-1] ** 2, axis=1)


def _fit_logistic(
    x: np.ndarray, y: np.ndarray, sw: np.ndarray, inv_c: np.ndarray
) -> np.ndarray:
    """Fit ``g`` logistic regressions at once by damped Newton steps.

    ``x`` (g, n, d) ends with a column of ones (the unpenalized intercept);
    ``y`` and the sample weights ``sw`` are (g, n); ``inv_c`` (g,) is 1 / C,
    the strength of the penalty ``0.5 * |w|^2`` against the summed log loss
    (scikit-learn's convention).  Returns the weights (g, d).
    """
    g, _, d = x.shape
    w = np.zeros((g, d))
    penalty = np.ones(d)
    penalty[-1] = 0.0
    # A tiny ridge on the intercept keeps the Hessian invertible when a group
    # has only one class among its weighted rows.
    ridge = inv_c[:, None] * penalty + 1e-9
    xt = x.transpose(0, 2, 1)
    current = _objective(x, y, sw, w, inv_c)
    for _ in range(_NEWTON_STEPS):
        q = _sigmoid(_scores(x, w))
        grad = (xt @ (sw * (q - y))[:, :, None])[:, :, 0] + ridge * w
        hess = xt @ (x * (sw * q * (1.0 - q))[:, :, None])
        hess[:, np.arange(d), np.arange(d)] += ridge
        step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]

        # Halve the step of any group whose objective would rise.
        scale = np.ones(g)
        trial = w - step
        value = _objective(x, y, sw, trial, inv_c)
        for _ in range(20):
            worse = value > current + 1e-12
            if not worse.any():
                break
            scale[worse] *= 0.5
            trial = w - scale[:, None] * step
            value = _objective(x, y, sw, trial, inv_c)
        accept = value <= current + 1e-12
        moved = np.where(accept[:, None], np.abs(trial - w), 0.0).max()
        w = np.where(accept[:, None], trial, w)
        current = np.where(accept, value, current)
        if moved < _NEWTON_TOL:
            break
    return w


def _fit_cv(
    x: np.ndarray,
    y: np.ndarray,
    cs: list[float],
    k: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Choose C per group by stratified k-fold CV on the held-out log loss,
    then refit each group on all its rows.  Returns (weights, chosen C)."""
    g, n, _ = x.shape
    folds = _stratified_folds(y, k, rng)
    cs_sorted = sorted(cs)
    losses = np.zeros((len(cs_sorted), g))
    for i, c in enumerate(cs_sorted):
        inv_c = np.full(g, 1.0 / c)
        for f in range(k):
            held = folds == f
            w = _fit_logistic(x, y, (~held).astype(np.float64), inv_c)
            z = _scores(x, w)
            losses[i] += np.sum(held * (np.logaddexp(0.0, z) - y * z), axis=1)
    # Ties go to the smallest C, the strongest regularization.
    best = np.argmin(losses, axis=0)
    chosen = np.asarray(cs_sorted)[best]
    w = _fit_logistic(x, y, np.ones((g, n)), 1.0 / chosen)
    return w, chosen


def _stratified_folds(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(g, n) fold numbers: each group's positives and negatives dealt out
    evenly to the k folds, in a seeded random order."""
    folds = np.empty(y.shape, dtype=np.int64)
    for j in range(y.shape[0]):
        for label in (0.0, 1.0):
            idx = np.flatnonzero(y[j] == label)
            folds[j, rng.permutation(idx)] = np.arange(len(idx)) % k
    return folds
