"""Ray Data pipelines: snapshots joined with the catalog, labels, and images
decoded as they stream.

- :func:`read_split` streams the catalog with Ray Data past a snapshot
  (``dev`` or ``test``), keeps the products it lists and adds ``targets``: each
  product's positive categories from the configured label sources, closed under
  ancestors.
- :func:`load_frame` materializes such a dataset's text and labels as a pandas
  frame, sorted by product id, for the components that train in memory.
- :class:`ImageDecoder` is the ``map_batches`` step that reads, decodes, resizes
  and normalizes images on the way to a model; a missing or unreadable image
  becomes ``has_image = False`` and a blank image, never a crash.
- :func:`split_train_valid` gives each component its own seeded validation
  split, by a hash of the product id, so it needs no shuffle.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from raycat.errors import LabelStoreError
from raycat.images import load_image
from raycat.labels import Source

logger = logging.getLogger(__name__)

CATALOG_COLUMNS = [
    "product_id",
    "title",
    "description",
    "extra_text",
    "colour",
    "image",
]
DEFAULT_LABEL_SOURCES = (Source.RULE.value, Source.HUMAN.value, Source.ORACLE.value)
# Human and oracle answers overrule the old system's rules.
_OVERRULING = (Source.HUMAN.value, Source.ORACLE.value)


def targets_from_sources(
    frame: pd.DataFrame, sources: Sequence[str] = DEFAULT_LABEL_SOURCES
) -> list[list[str]]:
    """Each dev product's positive categories.

    Positives of every chosen source, less the categories a human or the oracle
    said the product is not in.  Store labels are already propagated (positives
    to ancestors, negatives to descendants), so the result stays closed under
    ancestors.
    """

    def labels(row: dict, column: str) -> set[str]:
        value = row.get(column)
        return set() if value is None else set(value)

    out = []
    for row in frame.to_dict("records"):
        pos: set[str] = set()
        for s in sources:
            pos |= labels(row, f"pos_{s}")
        for s in _OVERRULING:
            if s in sources:
                pos -= labels(row, f"neg_{s}") - labels(row, f"pos_{s}")
        out.append(sorted(pos))
    return out


# The snapshot (or id set) this worker process fetched last, by object id.
_FETCHED: dict[str, pd.DataFrame | pd.Index] = {}


def _fetch_once(ref):
    """``ray.get(ref)``, once per worker process for the same object."""
    import ray

    key = ref.hex()
    if key not in _FETCHED:
        _FETCHED.clear()
        _FETCHED[key] = ray.get(ref)
    return _FETCHED[key]


def _join_snapshot(
    batch: pd.DataFrame, snapshot_ref, split: str, sources: Sequence[str]
) -> pd.DataFrame:
    """``map_batches`` step: keeps the catalog rows the snapshot lists and adds
    their ``targets``.  The snapshot (ids and label lists only, small next to
    the catalog) is fetched from the object store once per worker, so the
    catalog streams past it without a shuffle."""
    snapshot = _fetch_once(snapshot_ref)
    keep = batch[batch["product_id"].isin(snapshot.index)]
    out = keep[[c for c in CATALOG_COLUMNS if c in keep.columns]].reset_index(drop=True)
    labels = snapshot.loc[out["product_id"]].reset_index(drop=True)
    if split == "test":
        out["targets"] = [sorted(v) for v in labels["labels"]]
    else:
        out["targets"] = targets_from_sources(labels, sources)
    return out


def read_catalog(catalog_path: str | Path, *, read_cpus: float = 1.0):
    """The catalog's columns as a Ray Dataset, streamed from Parquet.
    ``read_cpus``: CPUs each read task holds (a read task waiting on a slow
    consumer keeps them)."""
    import ray.data as rd

    return rd.read_parquet(str(catalog_path), num_cpus=read_cpus).select_columns(
        CATALOG_COLUMNS
    )


def read_split(
    catalog_path: str | Path,
    snapshot: str | Path,
    split: Literal["dev", "test"],
    *,
    sources: Sequence[str] = DEFAULT_LABEL_SOURCES,
):
    """The ``split`` snapshot joined with the catalog, as a Ray Dataset with the
    catalog columns and ``targets`` (catalog products the snapshot does not
    list are left out)."""
    import pyarrow.parquet as pq
    import ray

    table = pq.read_table(Path(snapshot) / f"{split}.parquet")
    frame = table.to_pandas().set_index("product_id")
    if not frame.index.is_unique:
        dup = frame.index[frame.index.duplicated()][0]
        raise LabelStoreError(
            f"{snapshot}/{split}.parquet lists product {dup!r} more than once; "
            "re-create the snapshot (raycat prepare)"
        )
    return read_catalog(catalog_path).map_batches(
        _join_snapshot,
        fn_kwargs={
            "snapshot_ref": ray.put(frame),
            "split": split,
            "sources": list(sources),
        },
        batch_format="pandas",
        batch_size=4096,
    )


def _drop_ids(batch: pd.DataFrame, ids_ref) -> pd.DataFrame:
    """``map_batches`` step: the rows whose product id is not in the set held
    by ``ids_ref`` (fetched once per worker)."""
    ids = _fetch_once(ids_ref)
    return batch[~batch["product_id"].isin(ids)].reset_index(drop=True)


def read_pool(
    catalog_path: str | Path, snapshot: str | Path, *, read_cpus: float = 1.0
):
    """The pool (every catalog product outside the snapshot's test set) as a Ray
    Dataset of catalog columns.  Only the test ids are held in memory, so the
    pool streams however large it is.  ``read_cpus``: as for
    :func:`read_catalog`."""
    import pyarrow.parquet as pq
    import ray

    test = pq.read_table(Path(snapshot) / "test.parquet", columns=["product_id"])
    ids = pd.Index(test.column("product_id").to_pylist())
    return read_catalog(catalog_path, read_cpus=read_cpus).map_batches(
        _drop_ids,
        fn_kwargs={"ids_ref": ray.put(ids)},
        batch_format="pandas",
        batch_size=4096,
    )


def load_frame(ds, *, unlabeled: Literal["drop", "keep"] = "drop") -> pd.DataFrame:
    """Materialize a dataset from :func:`read_split` as a frame sorted by
    product id; products without any positive label are dropped (and counted)
    unless ``unlabeled="keep"``."""
    frame = ds.to_pandas()
    frame = frame.sort_values("product_id", kind="stable").reset_index(drop=True)
    if unlabeled == "drop":
        has = frame["targets"].map(len) > 0
        dropped = int((~has).sum())
        if dropped:
            logger.warning(
                "dropped %d of %d products that have no positive label from the "
                "chosen sources",
                dropped,
                len(frame),
            )
        frame = frame[has].reset_index(drop=True)
    frame["targets"] = frame["targets"].map(list)
    return frame


def split_train_valid(
    frame: pd.DataFrame, valid_fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded split by a hash of (seed, product id): the same product lands
    on the same side for the same seed, whatever the row order."""
    if not 0 < valid_fraction < 1:
        raise ValueError(
            f"valid_fraction must be between 0 and 1 (exclusive); got {valid_fraction}"
        )
    keys = [
        int.from_bytes(hashlib.blake2b(f"{seed}:{p}".encode(), digest_size=8).digest())
        for p in frame["product_id"]
    ]
    u = np.asarray(keys, dtype=np.uint64) / np.float64(2**64)
    valid = u < valid_fraction
    return (
        frame[~valid].reset_index(drop=True),
        frame[valid].reset_index(drop=True),
    )


class ImageDecoder:
    """``map_batches`` step: ``image`` (path or URI) -> ``pixels``
    ``(n, size, size, 3)`` float32 in [0, 1] (or uint8) and ``has_image``."""

    def __init__(self, size: int = 224, *, dtype: str = "float32"):
        self.size = size
        self.dtype = dtype

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["image"])
        pixels = np.zeros((n, self.size, self.size, 3), dtype=np.uint8)
        has = np.zeros(n, dtype=bool)
        for i, loc in enumerate(batch["image"]):
            pixels[i], has[i] = load_image(
                loc if isinstance(loc, str) else None, self.size
            )
        missing = int(n - has.sum())
        if missing:
            logger.info("%d of %d images in a batch missing or unreadable", missing, n)
        out = dict(batch)
        out["pixels"] = (
            pixels.astype(np.float32) / 255.0 if self.dtype == "float32" else pixels
        )
        out["has_image"] = has
        return out


def with_images(ds, size: int = 224, *, batch_size: int = 64, dtype: str = "float32"):
    """Add decoded ``pixels`` and ``has_image`` to a Ray Dataset, as it streams."""
    return ds.map_batches(
        ImageDecoder(size, dtype=dtype), batch_size=batch_size, batch_format="numpy"
    )
