"""The weighted ensemble: a convex combination of the members' probabilities.

The weights are non-negative and sum to 1, one per member, shared by every
category.  A convex combination of hierarchy-consistent probabilities is
consistent too, so the ensemble needs no repair of its own.

How the weights are fitted depends on the metric:

- ``log_loss`` (the default) is smooth and convex in the weights, so
  scipy's SLSQP finds the optimum on the simplex directly;
- the F1 metrics (``micro_f1``, ``macro_f1``, ``hierarchical_f1``) change in
  steps, where a gradient says nothing.  The search tries every member alone,
  the plain average and ``samples`` seeded Dirichlet draws, choosing the
  thresholds of each candidate on the same data as
  :func:`raycat.evaluation.choose_thresholds` would later, then refines the
  best by moving weight towards or away from one member at a time.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

from raycat.config import WeightedEnsembleConfig
from raycat.ensembles.base import EPS, EnsembleComponent, EnsembleParams
from raycat.evaluation import choose_thresholds, evaluate

logger = logging.getLogger(__name__)

WEIGHTS = "weights.json"
# Step sizes of the coordinate refinement: the share of weight moved at once.
REFINE_STEPS = (0.2, 0.1, 0.05, 0.025)


class WeightedParams(EnsembleParams, WeightedEnsembleConfig):
    """Members, seed, and the ``ensemble.weighted`` settings of the config."""


class WeightedEnsemble(EnsembleComponent):
    """Averages the members' probabilities with fitted non-negative weights."""

    kind = "weighted"
    Params = WeightedParams

    def _fit_combiner(self, stack: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        p: WeightedParams = self.params
        m = stack.shape[0]
        if m == 1:
            self.weights_ = np.ones(1)
            self.score_ = self._score(stack, y, self.weights_)
        elif p.metric == "log_loss":
            self.weights_, self.score_ = self._fit_log_loss(stack, y)
        else:
            self.weights_, self.score_ = self._search(stack, y)
        logger.info(
            "%s: weights %s (%s %.4f on %d products)",
            self.name,
            ", ".join(
                f"{n} {w:.3f}"
                for n, w in zip(self.component_names, self.weights_, strict=True)
            ),
            p.metric,
            self.score_,
            stack.shape[1],
        )
        return {"weights": self.weight_dict(), p.metric: self.score_}

    def weight_dict(self) -> dict[str, float]:
        return {
            n: float(w)
            for n, w in zip(self.component_names, self.weights_, strict=True)
        }

    def _combine(self, stack: np.ndarray) -> np.ndarray:
        return np.tensordot(self.weights_, stack, axes=1)

    def contributions(self) -> dict[str, dict[str, Any]]:
        c = len(self.taxonomy)
        return {
            n: {"overall": w, "per_category": np.full(c, w)}
            for n, w in self.weight_dict().items()
        }

    # -- the two fitting strategies -------------------------------------------------

    def _fit_log_loss(
        self, stack: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, float]:
        m = stack.shape[0]
        count = y.size

        def loss_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
            q = np.clip(np.tensordot(w, stack, axes=1), EPS, 1.0 - EPS)
            loss = -np.sum(y * np.log(q) + (1.0 - y) * np.log1p(-q)) / count
            dq = (q - y) / (q * (1.0 - q))
            grad = np.tensordot(stack, dq, axes=([1, 2], [0, 1])) / count
            return float(loss), grad

        start = np.full(m, 1.0 / m)
        result = minimize(
            loss_and_grad,
            start,
            jac=True,
            method="SLSQP",
            bounds=[(0.0, 1.0)] * m,
            constraints=[
                {"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": np.ones_like}
            ],
            options={"maxiter": 200, "ftol": 1e-9},
        )
        weights = _on_simplex(result.x)
        if not result.success:
            logger.warning(
                "%s: SLSQP did not converge (%s); keeping the best of its last "
                "point and the plain average",
                self.name,
                result.message,
            )
        # The optimizer's answer is kept only when it beats where it started.
        candidates = [weights, start]
        losses = [loss_and_grad(w)[0] for w in candidates]
        best = int(np.argmin(losses))
        return candidates[best], losses[best]

    def _search(self, stack: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
        p: WeightedParams = self.params
        m = stack.shape[0]
        rng = np.random.default_rng(p.seed)
        candidates = [
            *np.eye(m),
            np.full(m, 1.0 / m),
            *rng.dirichlet(np.ones(m), size=p.samples),
        ]
        with _quiet_thresholds():
            scores = [self._score(stack, y, w) for w in candidates]
            best = int(np.argmax(scores))
            weights, score = candidates[best], scores[best]

            for step in REFINE_STEPS:
                improved = True
                while improved:
                    improved = False
                    for k in range(m):
                        for move in (step, -step):
                            trial = _shift(weights, k, move)
                            if trial is None:
                                continue
                            s = self._score(stack, y, trial)
                            if s > score + 1e-12:
                                weights, score, improved = trial, s, True
        return weights, score

    def _score(self, stack: np.ndarray, y: np.ndarray, weights: np.ndarray) -> float:
        """The configured metric of ``weights``; higher is better except for
        log_loss, which is returned as is (lower is better)."""
        q = np.clip(np.tensordot(weights, stack, axes=1), 0.0, 1.0)
        metric = self.params.metric
        if metric == "log_loss":
            q = np.clip(q, EPS, 1.0 - EPS)
            return float(-np.mean(y * np.log(q) + (1.0 - y) * np.log1p(-q)))
        y_int = y.astype(np.uint8)
        thresholds = choose_thresholds(y_int, q)
        return float(evaluate(y_int, q, self.taxonomy, thresholds)[metric])

    # -- persistence ----------------------------------------------------------------

    def _save_combiner(self, folder: Path) -> None:
        state = {
            "weights": self.weight_dict(),
            "metric": self.params.metric,
            "score": self.score_,
        }
        (folder / WEIGHTS).write_text(json.dumps(state, indent=2))

    def _load_combiner(self, folder: Path) -> None:
        state = json.loads((folder / WEIGHTS).read_text())
        self.weights_ = np.asarray(
            [state["weights"][n] for n in self.component_names], dtype=np.float64
        )
        self.score_ = state["score"]


def _on_simplex(w: np.ndarray) -> np.ndarray:
    # SLSQP honours the constraints only up to its tolerance.
    w = np.clip(np.asarray(w, dtype=np.float64), 0.0, None)
    total = w.sum()
    return w / total if total > 0 else np.full(len(w), 1.0 / len(w))


def _shift(weights: np.ndarray, k: int, step: float) -> np.ndarray | None:
    """Move a share ``step`` of the weight towards member ``k`` (or, for a
    negative step, that share of ``k``'s own weight to the others)."""
    if step > 0:
        if weights[k] >= 1.0:
            return None
        trial = (1.0 - step) * weights
        trial[k] += step
    else:
        if weights[k] <= 0.0:
            return None
        moved = -step * weights[k]
        trial = weights.copy()
        trial[k] -= moved
        others = np.arange(len(weights)) != k
        rest = trial[others].sum()
        if rest > 0:
            trial[others] += moved * trial[others] / rest
        else:
            trial[others] += moved / others.sum()
    return _on_simplex(trial)


@contextlib.contextmanager
def _quiet_thresholds() -> Iterator[None]:
    # choose_thresholds logs a line per call; a search makes hundreds of calls.
    log = logging.getLogger("raycat.evaluation")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)
