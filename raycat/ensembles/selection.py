"""Fair comparison of components and ensembles, and the run's current model.

Every candidate is judged on the same products, none of which it was fitted
on.  The dev products are halved by a seeded hash of their id:

- *meta-train*: the combiners are fitted on the components' out-of-fold
  predictions for these products;
- *meta-valid*: components (their out-of-fold predictions) and ensembles
  (fitted on meta-train) are scored here, with per-category thresholds chosen
  here, and the best by the selection metric wins.

The ensembles kept are then refitted on all out-of-fold predictions and keep
the meta-valid thresholds; on the test set, the saved components predict and
the refitted combiners combine.

The winner is written to ``<home>/current.json``, which scoring and serving
read through :func:`current_model` when no model is named.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from raycat.ensembles.base import EnsembleComponent, EnsembleError
from raycat.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

CURRENT = "current.json"
# Half of the dev products fit the combiners, half judge every candidate.
META_VALID_FRACTION = 0.5


def meta_split(product_ids: Any, seed: int) -> np.ndarray:
    """True for the products of the meta-valid half, from a hash of (seed,
    product id), independent of the fold assignment."""
    keys = [
        int.from_bytes(
            hashlib.blake2b(f"{seed}:meta:{p}".encode(), digest_size=8).digest()
        )
        for p in product_ids
    ]
    u = np.asarray(keys, dtype=np.uint64) / np.float64(2**64)
    return u < META_VALID_FRACTION


def make_ensemble(
    kind: str,
    taxonomy: Taxonomy,
    params: Mapping[str, Any],
    components: list[str],
    name: str | None = None,
) -> EnsembleComponent:
    """An unfitted ensemble of ``kind`` over ``components``."""
    from raycat.components.registry import component_class

    cls = component_class(kind)
    if not issubclass(cls, EnsembleComponent):
        raise EnsembleError(f"component kind {kind!r} is not an ensemble")
    return cls(taxonomy, {**params, "components": components}, name=name or kind)


def assess_component(
    oof: np.ndarray,
    y: np.ndarray,
    valid_mask: np.ndarray,
    test_probs: np.ndarray,
    y_test: np.ndarray,
    taxonomy: Taxonomy,
    default_threshold: float = 0.5,
) -> dict[str, Any]:
    """Score one component's out-of-fold predictions on meta-valid (with
    thresholds chosen there) and its saved model's test predictions."""
    from raycat.evaluation import choose_thresholds, evaluate

    thresholds = choose_thresholds(
        y[valid_mask], oof[valid_mask], default=default_threshold
    )
    return {
        "thresholds": thresholds,
        "valid": evaluate(y[valid_mask], oof[valid_mask], taxonomy, thresholds),
        "test": evaluate(y_test, test_probs, taxonomy, thresholds),
    }


def assess_ensemble(
    kind: str,
    params: Mapping[str, Any],
    components: list[str],
    name: str,
    taxonomy_json: dict,
    preds: Mapping[str, np.ndarray],
    y: np.ndarray,
    valid_mask: np.ndarray,
    test_preds: Mapping[str, np.ndarray],
    y_test: np.ndarray,
    default_threshold: float = 0.5,
) -> dict[str, Any]:
    """Fit an ensemble's combiner on meta-train and score it on meta-valid
    (thresholds chosen there); refit it on all of ``preds`` and score the
    refitted one on the test predictions.

    Returns the metrics, thresholds, the refitted ensemble (without members)
    as ``combiner`` and its ``test_probs``.
    """
    from raycat.evaluation import choose_thresholds, evaluate

    taxonomy = Taxonomy.from_json(taxonomy_json)
    train_mask = ~valid_mask

    judged = make_ensemble(kind, taxonomy, params, components, name)
    fit_info = judged.fit_combiner(
        {n: preds[n][train_mask] for n in components}, y[train_mask]
    )
    p_valid = judged.combine({n: preds[n][valid_mask] for n in components})
    thresholds = choose_thresholds(y[valid_mask], p_valid, default=default_threshold)

    final = make_ensemble(kind, taxonomy, params, components, name)
    final_info = final.fit_combiner({n: preds[n] for n in components}, y)
    p_test = final.combine({n: test_preds[n] for n in components})
    return {
        "name": name,
        "kind": kind,
        "components": list(components),
        "thresholds": thresholds,
        "valid": evaluate(y[valid_mask], p_valid, taxonomy, thresholds),
        "test": evaluate(y_test, p_test, taxonomy, thresholds),
        "fit_meta_train": fit_info,
        "fit": final_info,
        "combiner": final,
        "test_probs": p_test,
    }


def rank_models(scores: Mapping[str, float], metric: str) -> list[tuple[str, float]]:
    """Candidates best first by ``metric`` (higher is better); ties keep the
    order given, so list simpler models first to prefer them."""
    if not scores:
        raise EnsembleError(f"no model to select by {metric}")
    order = list(scores)
    return sorted(scores.items(), key=lambda kv: (-kv[1], order.index(kv[0])))


def write_current(
    home: str | Path,
    model: str,
    path: str | Path,
    metric: str,
    value: float,
    **extra: Any,
) -> dict[str, Any]:
    """Mark ``model`` as the run's current model (``<home>/current.json``).

    The file is replaced atomically, so a reader never sees half of it.
    """
    now = datetime.now(UTC)
    record = {
        "model": model,
        "path": str(path),
        "version": now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z",
        "metric": metric,
        "value": float(value),
        **extra,
    }
    target = Path(home) / CURRENT
    tmp = target.with_suffix(f".json.tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    os.replace(tmp, target)
    logger.info("current model: %s (%s %.4f)", model, metric, value)
    return record


def current_model(home: str | Path) -> dict[str, Any] | None:
    """The run's current model as written by ``raycat ensemble``, or None when
    no model has been selected yet."""
    path = Path(home) / CURRENT
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise EnsembleError(
            f"{path} is not valid JSON ({err}); rerun `raycat ensemble CONFIG` to "
            "select the current model again"
        ) from None
    if not isinstance(record, dict) or not {"model", "path"} <= set(record):
        raise EnsembleError(
            f"{path} does not name a model and its path; rerun `raycat ensemble "
            "CONFIG` to select the current model again"
        )
    return record
