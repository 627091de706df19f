"""Out-of-fold predictions: held-out probabilities for every dev product.

A combiner must learn how far to trust each component from predictions the
component made for products it never saw; trained on a component's
predictions for its own training data, it would trust an overfitted model
most.  So the dev products are dealt into ``k`` folds by a seeded hash of their
id, and for each fold the component is trained on the other folds (its own
train / validation split of them, as in train-pred) and predicts that fold.
Every dev product thus gets exactly one prediction, from a model that never
saw it.

Each (component, fold) is one Ray task; all run in parallel.  The result is
one Parquet file per component, ``<home>/oof/<component>.parquet``, with
``product_id``, ``fold`` and one float column per category id.
"""

from __future__ import annotations

import hashlib
import logging
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from raycat.config import ComponentSpec
from raycat.ensembles.base import EnsembleError
from raycat.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

OOF_DIR = "oof"


def assign_folds(product_ids: Any, k: int, seed: int) -> np.ndarray:
    """Each product's fold in ``0..k-1``, from a hash of (seed, product id):
    the same product lands in the same fold whatever the row order."""
    if k < 2:
        raise EnsembleError(f"ensemble.folds must be at least 2; got {k}")
    keys = [
        int.from_bytes(
            hashlib.blake2b(f"{seed}:fold:{p}".encode(), digest_size=8).digest()
        )
        for p in product_ids
    ]
    return (np.asarray(keys, dtype=np.uint64) % np.uint64(k)).astype(np.int64)


def fit_fold(
    name: str,
    spec: dict[str, Any],
    taxonomy_json: dict,
    dev: pd.DataFrame,
    folds: np.ndarray,
    fold: int,
) -> dict[str, Any]:
    """Train component ``name`` on every fold but ``fold`` and predict ``fold``.

    ``spec`` is a :class:`~raycat.config.ComponentSpec` as a dict, with the
    hyperparameters to use.  Returns the held-out ``product_ids``, their
    ``probs`` and timings.
    """
    from raycat.components import component_class
    from raycat.data import split_train_valid

    started = time.time()
    spec_ = ComponentSpec.model_validate(spec)
    taxonomy = Taxonomy.from_json(taxonomy_json)
    held = np.asarray(folds) == fold
    rest = dev[~held].reset_index(drop=True)
    target = dev[held].reset_index(drop=True)

    # The held-out fold is neither trained on nor used for early stopping; the
    # component's own split of the other folds provides its validation data.
    train, valid = split_train_valid(rest, spec_.split.valid_fraction, spec_.split.seed)
    comp = component_class(spec_.kind)(taxonomy, spec_.params, name=name)
    comp.fit(train, valid)
    probs = comp.predict_proba(target)
    return {
        "component": name,
        "fold": fold,
        "product_ids": target["product_id"].tolist(),
        "probs": probs,
        "n_train": len(train),
        "wall_s": round(time.time() - started, 2),
    }


def cross_fit(
    name: str,
    spec: ComponentSpec | dict[str, Any],
    taxonomy: Taxonomy,
    dev: pd.DataFrame,
    k: int,
    seed: int,
) -> pd.DataFrame:
    """Out-of-fold predictions of one component, fold after fold in this
    process (the pipeline runs the folds as Ray tasks instead)."""
    spec_dict = ComponentSpec.model_validate(spec).model_dump()
    folds = assign_folds(dev["product_id"], k, seed)
    parts = [
        fit_fold(name, spec_dict, taxonomy.to_json(), dev, folds, f)
        for f in range(k)
        if np.any(folds == f)
    ]
    return oof_frame(parts, taxonomy)


def oof_frame(parts: list[dict[str, Any]], taxonomy: Taxonomy) -> pd.DataFrame:
    """One frame from the results of :func:`fit_fold`, sorted by product id."""
    ids = [pid for part in parts for pid in part["product_ids"]]
    fold = np.concatenate(
        [np.full(len(part["product_ids"]), part["fold"]) for part in parts]
    )
    probs = np.concatenate([part["probs"] for part in parts]).astype(np.float32)
    frame = pd.DataFrame(probs, columns=taxonomy.ids)
    frame.insert(0, "fold", fold.astype(np.int64))
    frame.insert(0, "product_id", ids)
    return frame.sort_values("product_id", kind="stable").reset_index(drop=True)


def write_oof(path: Path, frame: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, path)
    return path


def read_oof(path: Path, taxonomy: Taxonomy) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    missing = [c for c in ["product_id", "fold", *taxonomy.ids] if c not in frame]
    if missing:
        raise EnsembleError(
            f"{path} lacks the columns {missing[:5]}; it was made for another "
            "taxonomy; rerun `raycat ensemble` to rebuild it"
        )
    return frame


def run_oof(
    specs: dict[str, ComponentSpec],
    taxonomy: Taxonomy,
    dev: pd.DataFrame,
    home: Path,
    k: int,
    seed: int,
) -> tuple[dict[str, Path], dict[str, str]]:
    """Cross-fit every component on Ray, one task per (component, fold).

    Returns the OOF Parquet file of each component that succeeded, and the
    error of each that failed (a component with one failed fold has no OOF
    predictions; the others go on).
    """
    import ray

    folds = assign_folds(dev["product_id"], k, seed)
    present = [f for f in range(k) if np.any(folds == f)]
    if len(present) < k:
        logger.warning(
            "%d of %d folds are empty: %d dev products are too few for "
            "ensemble.folds=%d",
            k - len(present),
            k,
            len(dev),
            k,
        )
    dev_ref, folds_ref = ray.put(dev), ray.put(folds)
    taxonomy_json = taxonomy.to_json()
    task = ray.remote(fit_fold)
    pending = {}
    for name, spec in specs.items():
        for f in present:
            ref = task.options(
                num_cpus=spec.resources.cpus,
                num_gpus=spec.resources.gpus,
                name=f"oof:{name}:{f}",
                max_retries=0,
            ).remote(name, spec.model_dump(), taxonomy_json, dev_ref, folds_ref, f)
            pending[ref] = (name, f)
    logger.info(
        "cross-fitting %d components on %d folds: %d Ray tasks",
        len(specs),
        len(present),
        len(pending),
    )

    parts: dict[str, list[dict]] = {n: [] for n in specs}
    errors: dict[str, str] = {}
    started = time.time()
    total = len(pending)
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        name, f = pending.pop(done[0])
        try:
            parts[name].append(ray.get(done[0]))
        except Exception as err:
            cause = getattr(err, "cause", None) or err
            errors.setdefault(name, f"fold {f}: {type(cause).__name__}: {cause}")
            logger.error("component %s, fold %d failed: %s", name, f, cause)
            logger.debug("%s", traceback.format_exc())
        logger.info(
            "[%d/%d] %s fold %d done after %.0f s",
            total - len(pending),
            total,
            name,
            f,
            time.time() - started,
        )

    paths: dict[str, Path] = {}
    for name in specs:
        if name in errors:
            continue
        frame = oof_frame(parts[name], taxonomy)
        paths[name] = write_oof(home / OOF_DIR / f"{name}.parquet", frame)
    return paths, errors
