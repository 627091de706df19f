"""score: batch-score the unlabeled pool with Ray Data, streaming.

Every pool product goes through an actor pool; each actor loads the models
once (the current model, the best text-only component and the image
component) and writes, per product:

- ``p_model``: the current model's probability per category;
- ``p_text`` / ``p_image``: the text-only and image models' (absent when the
  run has no such model);
- ``entropy``: each category's binary entropy under the current model, and
  ``product_entropy``: their mean;
- ``disagreement``: ``|p_image - p_text|`` per category.

The output is a folder of Parquet files (fixed-size list columns, categories in
``taxonomy.json`` order), written as the stream goes, so memory does not grow
with the pool.  What memory it takes is set by the block size (``block_mib``):
Ray Data's default of 128 MiB blocks makes each reader, scorer and writer hold
several hundred MiB, and a 1 GiB local object store spill; the scores of
4,096 products over 300 categories are 15 MiB.  Read and write tasks hold half
a CPU (``io_cpus``) so that, with the scorers on every other CPU, a writer can
run beside a reader that is waiting for the scorers, instead of the scored
blocks piling up (and spilling) until the read ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from raycat.config import PipelineConfig
from raycat.errors import ConfigError

logger = logging.getLogger(__name__)

# Kinds that read no text: an image model's disagreement with a text model is
# a signal; two text models' is not.
IMAGE_KINDS = {"image"}
JOINT_OR_ENSEMBLE_KINDS = {"wide_deep_conv", "rnn_wide_conv", "weighted", "stacked"}
EPS = 1e-7
# Rows per batch when reading scores back: 65,536 x 300 categories is 75 MiB.
_READ_ROWS = 1 << 16


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in bits of each Bernoulli probability."""
    q = np.clip(p, EPS, 1 - EPS)
    return -(q * np.log2(q) + (1 - q) * np.log2(1 - q))


def trained_models(models_root: str | Path) -> dict[str, dict[str, Any]]:
    """Saved models under ``models_root`` with their kind and the validation
    metrics saved next to each (``metrics.json``)."""
    found: dict[str, dict[str, Any]] = {}
    for manifest in sorted(Path(models_root).glob("*/component.json")):
        data = json.loads(manifest.read_text())
        metrics = manifest.parent / "metrics.json"
        found[manifest.parent.name] = {
            "kind": data["kind"],
            "path": str(manifest.parent),
            "valid": json.loads(metrics.read_text()).get("valid")
            if metrics.is_file()
            else None,
        }
    return found


def _valid_score(info: dict[str, Any], metric: str) -> float:
    return float((info.get("valid") or {}).get(metric, -1.0))


def choose_models(
    home: str | Path,
    model: str | None = None,
    *,
    metric: str = "hierarchical_f1",
    models_root: str | Path | None = None,
) -> dict[str, str | None]:
    """Model folders for the ``current``, ``text`` and ``image`` roles.

    ``current``: ``model`` (a name under models/ or a folder), else the run's
    current model (``current.json``), else the best saved component by
    validation ``metric``.  ``text``: the best text-only component.
    ``image``: the best image component, or None.  Models are looked for in
    ``models_root`` (default ``<home>/models``).
    """
    home = Path(home)
    root = Path(models_root) if models_root else home / "models"
    models = trained_models(root)
    if not models:
        raise ConfigError(
            f"no trained model under {root}; run `raycat train-pred` or "
            "`raycat tune` first"
        )
    ranked = sorted(models, key=lambda n: _valid_score(models[n], metric), reverse=True)

    if model is not None:
        current = models[model]["path"] if model in models else model
        if not Path(current, "component.json").is_file():
            raise ConfigError(
                f"--model {model!r} is neither a trained model of this run "
                f"({sorted(models)}) nor a folder holding a saved component"
            )
    elif models_root is None and (home / "current.json").is_file():
        current = json.loads((home / "current.json").read_text())["path"]
    else:
        current = models[ranked[0]]["path"]

    text = [
        n
        for n in ranked
        if models[n]["kind"] not in IMAGE_KINDS | JOINT_OR_ENSEMBLE_KINDS
        and models[n]["kind"] != "random"
    ]
    image = [n for n in ranked if models[n]["kind"] in IMAGE_KINDS]
    return {
        "current": current,
        "text": models[text[0]]["path"] if text else None,
        "image": models[image[0]]["path"] if image else None,
    }


class PoolScorer:
    """``map_batches`` class: loads the models once per actor."""

    def __init__(self, roles: dict[str, str | None]):
        from raycat.components import load_component

        self.models = {
            role: load_component(path) for role, path in roles.items() if path
        }

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        p_model = self.models["current"].predict_proba(batch).astype(np.float32)
        entropy = binary_entropy(p_model).astype(np.float32)
        out = {
            "product_id": batch["product_id"],
            "p_model": p_model,
            "entropy": entropy,
            "product_entropy": entropy.mean(axis=1),
        }
        if "text" in self.models:
            out["p_text"] = self.models["text"].predict_proba(batch).astype(np.float32)
        if "image" in self.models:
            out["p_image"] = (
                self.models["image"].predict_proba(batch).astype(np.float32)
            )
        if "p_text" in out and "p_image" in out:
            out["disagreement"] = np.abs(out["p_image"] - out["p_text"])
        return out


@contextlib.contextmanager
def _block_size(mib: int) -> Iterator[None]:
    """Ray Data's target block size for the datasets built and run inside."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    before = ctx.target_max_block_size
    ctx.target_max_block_size = mib << 20
    try:
        yield
    finally:
        ctx.target_max_block_size = before


def score_pool(
    config: PipelineConfig,
    *,
    model: str | None = None,
    out_dir: str | Path | None = None,
    batch_size: int = 1024,
    max_actors: int | None = None,
    gpus_per_actor: float = 0.0,
    models_root: str | Path | None = None,
    block_mib: int = 16,
    io_cpus: float = 0.5,
    snapshot: str | Path | None = None,
) -> dict[str, Any]:
    """Score the pool (every product outside the test set of ``snapshot``,
    default the run's latest) and write Parquet under ``out_dir`` (default
    ``<home>/scores/latest``).

    ``block_mib``: Ray Data's target block size for this run (memory per task
    follows it); ``io_cpus``: CPUs held by each read and write task."""
    if block_mib < 1:
        raise ConfigError(f"block_mib must be >= 1 (MiB), got {block_mib}")
    if not 0 < io_cpus <= 1:
        raise ConfigError(f"io_cpus must be in (0, 1], got {io_cpus}")
    import pyarrow.parquet as pq
    import ray
    import ray.data

    from raycat.data import read_pool
    from raycat.ray_runtime import init_ray
    from raycat.run import RunPaths

    started = time.time()
    paths = RunPaths(Path(config.home))
    if not paths.catalog.is_file():
        raise ConfigError(
            f"{paths.catalog} is missing; run `raycat prepare` (or train-pred) first"
        )
    roles = choose_models(paths.home, model, models_root=models_root)
    logger.info(
        "scoring with current=%s, text=%s, image=%s",
        *(Path(p).name if p else None for p in roles.values()),
    )
    if roles["image"] is None:
        logger.warning(
            "no image model in this run: p_image and disagreement are left out, "
            "so the disagreement strategy has no candidates"
        )
    snapshot = snapshot or paths.latest_snapshot()
    if snapshot is None:
        raise ConfigError("no snapshot in the run's home; run `raycat prepare`")
    init_ray()

    out = Path(out_dir) if out_dir else paths.home / "scores" / "latest"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    with _block_size(block_mib):
        scored = read_pool(paths.catalog, snapshot, read_cpus=io_cpus).map_batches(
            PoolScorer,
            fn_constructor_args=(roles,),
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(
                min_size=1, max_size=max_actors or max(1, cpus - 1)
            ),
            num_gpus=gpus_per_actor,
        )
        scored.write_parquet(str(out), ray_remote_args={"num_cpus": io_cpus})
    n_products = sum(pq.read_metadata(f).num_rows for f in out.glob("*.parquet"))
    summary = {
        "scores": str(out),
        "products": n_products,
        "models": roles,
        "wall_s": round(time.time() - started, 1),
    }
    (out / "_scoring.json").write_text(json.dumps(summary, indent=1))
    logger.info(
        "scored %d products in %.1f s -> %s", n_products, summary["wall_s"], out
    )
    return summary


def read_scores(
    folder: str | Path, columns: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Load a scores folder into arrays, rows sorted by product id.

    ``columns``: the score columns to load (``product_id`` always comes); by
    default every column.  The page needs only ``p_model``, ``p_text`` and
    ``p_image``: each (products x categories) column is 4 bytes a cell, so
    leaving out ``entropy`` and ``disagreement`` saves two of five such
    matrices.  Per-category columns become (products x categories) arrays; a
    column that is not in the folder is left out of the result, so ``.get()``
    tells.

    The ids are read first and sorted; then each column streams from the files
    in batches, every batch written straight to its rows in id order, so
    memory holds the result and one batch, never the whole table besides.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    dataset = pads.dataset(str(folder), format="parquet")
    present = set(dataset.schema.names)
    if "product_id" not in present:
        raise ConfigError(
            f"{folder} holds no product_id column; is it a `raycat score` output?"
        )
    files = sorted(dataset.files)
    ids = pa.chunked_array(
        [
            chunk
            for f in files
            for chunk in pq.read_table(f, columns=["product_id"])["product_id"].chunks
        ],
        type=dataset.schema.field("product_id").type,
    )
    order = pc.sort_indices(ids).to_numpy()
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    out: dict[str, np.ndarray] = {
        "product_id": ids.take(order).to_numpy(zero_copy_only=False)
    }
    wanted = [c for c in (columns or dataset.schema.names) if c != "product_id"]
    for name in (c for c in wanted if c in present):
        matrix = _column_in_order(files, name, rank)
        if matrix is not None:
            out[name] = matrix
    return out


def _column_in_order(
    files: list[str], name: str, rank: np.ndarray
) -> np.ndarray | None:
    """Column ``name`` of ``files`` (in that order) as one array, row i of the
    files at ``rank[i]``; read in batches, each written straight to its rows.
    None when the files hold no rows."""
    import pyarrow.parquet as pq

    matrix = None
    start = 0
    for f in files:
        for batch in pq.ParquetFile(f).iter_batches(
            batch_size=_READ_ROWS, columns=[name]
        ):
            values = _as_numpy(batch.column(0), name, f)
            if matrix is None:
                matrix = np.empty((rank.size, *values.shape[1:]), values.dtype)
            elif values.shape[1:] != matrix.shape[1:]:
                raise ConfigError(
                    f"{f}: column {name!r} holds {values.shape[1:]} values per "
                    f"product where earlier files hold {matrix.shape[1:]}; score "
                    "columns hold one value per category. Re-run `raycat score`"
                )
            matrix[rank[start : start + len(values)]] = values
            start += len(values)
    return matrix


def _as_numpy(col, name: str, where: str | Path) -> np.ndarray:
    """One Arrow array as numpy.  A list column (Ray Data writes 2-D arrays as
    lists of equal length, tagged as its tensor extension) becomes a (rows x
    list length) array by one reshape of its flat values, not one array per
    product."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(col.type, pa.ExtensionType):
        col = col.storage
    lists = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)
    if not any(is_list(col.type) for is_list in lists):
        return col.to_numpy(zero_copy_only=False)
    low, high = pc.min_max(pc.list_value_length(col)).values()
    if low != high or col.null_count:
        raise ConfigError(
            f"{where}: column {name!r} holds lists of {low.as_py()} to "
            f"{high.as_py()} values ({col.null_count} missing); score columns hold "
            "one value per category. Re-run `raycat score`"
        )
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), low.as_py())
