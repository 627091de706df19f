"""The meta-learner's dataset: every component's out-of-fold predictions,
side by side, one row per dev product.

A Ray Data job reads each component's OOF Parquet file, prefixes its category
columns with the component's name, joins the files on ``product_id`` and
streams the rows, shuffled (seeded), in batches into the arrays the combiners
fit on.  The shuffle is a local one in the batch iterator: the combiners need
rows in no particular order, not a global all-to-all exchange, which would
cost as much as another join.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from raycat.ensembles.base import EnsembleError
from raycat.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

# Joined column names are "<component>::<category id>"; category ids are slugs
# joined by "/", so they never contain "::".
SEP = "::"
# Rows per join partition: each partition is a small task of its own.
_ROWS_PER_PARTITION = 50_000


@dataclass
class MetaData:
    """Held-out predictions of every component for the same products."""

    product_ids: np.ndarray
    folds: np.ndarray
    preds: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.product_ids)

    def subset(self, mask: np.ndarray) -> dict[str, np.ndarray]:
        return {n: p[mask] for n, p in self.preds.items()}


def compose_meta_dataset(
    oof_paths: dict[str, Path],
    taxonomy: Taxonomy,
    *,
    seed: int = 0,
    batch_size: int = 1024,
    shuffle_buffer: int = 10_000,
) -> MetaData:
    """Join the components' OOF predictions on product id with Ray Data.

    Only products every component predicted are kept (all of them, unless a
    file is stale); the count of dropped ones is logged.
    """
    import ray.data

    if not oof_paths:
        raise EnsembleError("no out-of-fold predictions to compose")
    names = list(oof_paths)
    datasets = []
    n_rows = {}
    for i, name in enumerate(names):
        # The row count from the Parquet footer, without running a Ray job.
        n_rows[name] = pq.ParquetFile(oof_paths[name]).metadata.num_rows
        ds = ray.data.read_parquet(str(oof_paths[name]))
        # The fold is the same in every file; the first one brings it.
        keep = ["product_id", *(["fold"] if i == 0 else []), *taxonomy.ids]
        ds = ds.select_columns(keep).rename_columns(
            {cid: f"{name}{SEP}{cid}" for cid in taxonomy.ids}
        )
        datasets.append(ds)

    joined = datasets[0]
    parts = max(1, min(64, max(n_rows.values()) // _ROWS_PER_PARTITION + 1))
    for ds in datasets[1:]:
        joined = joined.join(
            ds, join_type="inner", num_partitions=parts, on=("product_id",)
        )

    ids, folds = [], []
    preds: dict[str, list[np.ndarray]] = {n: [] for n in names}
    batches = joined.iter_batches(
        batch_size=batch_size,
        batch_format="numpy",
        local_shuffle_buffer_size=shuffle_buffer,
        local_shuffle_seed=seed,
    )
    for batch in batches:
        ids.append(batch["product_id"])
        folds.append(batch["fold"])
        for name in names:
            preds[name].append(
                np.column_stack([batch[f"{name}{SEP}{cid}"] for cid in taxonomy.ids])
            )
    if not ids:
        raise EnsembleError(
            f"the components' out-of-fold predictions share no product "
            f"({n_rows}); rerun `raycat ensemble` to rebuild them"
        )
    out = MetaData(
        product_ids=np.concatenate(ids).astype(str),
        folds=np.concatenate(folds).astype(np.int64),
        preds={
            n: np.concatenate(p).astype(np.float32).reshape(-1, len(taxonomy))
            for n, p in preds.items()
        },
    )
    dropped = max(n_rows.values()) - len(out)
    if dropped:
        logger.warning(
            "%d products lack out-of-fold predictions from some component and were "
            "left out of the meta dataset (rows per component: %s)",
            dropped,
            n_rows,
        )
    return out
