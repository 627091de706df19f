"""Batch scoring with Ray Data: a saved component loaded once per actor.

``score_dataset(ds, model_dir)`` streams any dataset with the canonical catalog
columns through an actor pool; each actor loads the model once and scores the
batches it is handed, so memory stays flat however large the pool is.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


class ComponentScorer:
    """``map_batches`` class: per-category probabilities of a saved component.

    Returns ``product_id`` and ``probs`` (a fixed-size float32 tensor column,
    one value per category in taxonomy order).
    """

    def __init__(self, model_dir: str | Path):
        from raycat.components import load_component

        self.component = load_component(model_dir)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        probs = self.component.predict_proba(batch)
        return {"product_id": batch["product_id"], "probs": probs.astype(np.float32)}


def score_dataset(
    ds,
    model_dir: str | Path,
    *,
    batch_size: int = 4096,
    min_actors: int = 1,
    max_actors: int = 2,
    num_cpus_per_actor: float = 1.0,
    num_gpus_per_actor: float = 0.0,
):
    """Add a component's probabilities to a Ray Dataset, streaming."""
    import ray.data

    return ds.map_batches(
        ComponentScorer,
        fn_constructor_args=(str(model_dir),),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=min_actors, max_size=max_actors),
        num_cpus=num_cpus_per_actor,
        num_gpus=num_gpus_per_actor,
    )
