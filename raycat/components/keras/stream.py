"""Model inputs from catalog rows: the Ray Data stream for training and the
same conversion for a batch to predict.

This module imports neither TensorFlow nor Keras: its ``map_batches`` steps
run in Ray Data tasks, which should not pay for importing TensorFlow.

Every Keras component takes the same named inputs:

- ``text``: one string per product, its text fields joined
  (``title description extra_text colour``); the model vectorizes it;
- ``pixels``: ``(size, size, 3)`` uint8 RGB, decoded as the data streams
  (blank for a missing or unreadable image);
- ``has_image``: 1.0 when the image was read, else 0.0.

Training streams add ``labels``: the float32 multi-hot targets.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from raycat.data import with_images
from raycat.images import load_image
from raycat.taxonomy import Taxonomy
from raycat.text import TEXT_FIELDS, join_fields

logger = logging.getLogger(__name__)

TEXT = "text"
PIXELS = "pixels"
HAS_IMAGE = "has_image"
LABELS = "labels"
# Rows per block of a training stream: small enough that decoding spreads over
# every CPU, large enough that task overhead stays negligible.
BLOCK_ROWS = 512


def texts(batch: Mapping[str, Any]) -> np.ndarray:
    """The model's text input: the text fields joined, missing values as ""."""
    clean = {}
    for field in TEXT_FIELDS:
        if field in batch:
            values = batch[field]
            clean[field] = [
                "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                for v in values
            ]
    return join_fields(clean).astype(str)


def _as_uint8_pixels(pixels: np.ndarray) -> np.ndarray:
    pixels = np.asarray(pixels)
    if pixels.dtype == np.uint8:
        return pixels
    # ImageDecoder's default float32 output is scaled to [0, 1]; the models
    # take the 0-255 range every keras.applications backbone expects.
    if pixels.size and float(pixels.max()) <= 1.0:
        pixels = pixels * 255.0
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def model_inputs(
    batch: Mapping[str, Any] | pd.DataFrame,
    *,
    text: bool,
    image_size: int | None,
) -> dict[str, np.ndarray]:
    """The named model inputs for a batch of products to predict.

    Decoded ``pixels`` (with ``has_image``) already in the batch are used as
    they are; otherwise each ``image`` path is read and decoded here.
    """
    out: dict[str, np.ndarray] = {}
    if text:
        out[TEXT] = texts(batch)
    if image_size is not None:
        if PIXELS in batch:
            pixels = _as_uint8_pixels(batch[PIXELS])
            if pixels.shape[1:] != (image_size, image_size, 3):
                raise ValueError(
                    f"batch pixels have shape {pixels.shape[1:]}; this model takes "
                    f"({image_size}, {image_size}, 3): decode images at "
                    f"image_size={image_size} or pass image paths instead"
                )
            has = (
                np.asarray(batch[HAS_IMAGE], dtype=np.float32)
                if HAS_IMAGE in batch
                else np.ones(len(pixels), dtype=np.float32)
            )
        else:
            locations = list(batch["image"]) if "image" in batch else []
            if not locations:
                n = len(batch["product_id"])
                locations = [None] * n
            pixels = np.zeros((len(locations), image_size, image_size, 3), np.uint8)
            has = np.zeros(len(locations), dtype=np.float32)
            for i, loc in enumerate(locations):
                pixels[i], ok = load_image(
                    loc if isinstance(loc, str) else None, image_size
                )
                has[i] = float(ok)
        out[PIXELS] = pixels
        out[HAS_IMAGE] = has
    return out


class ModelInputs:
    """``map_batches`` step: catalog columns (and ``pixels``/``has_image``
    from :class:`raycat.data.ImageDecoder`) -> the model's input columns, plus
    ``labels`` when a taxonomy is given."""

    def __init__(self, *, text: bool, images: bool, taxonomy: Taxonomy | None):
        self.text = text
        self.images = images
        self.taxonomy = taxonomy

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if self.text:
            out[TEXT] = texts(batch)
        if self.images:
            out[PIXELS] = batch[PIXELS]
            out[HAS_IMAGE] = np.asarray(batch[HAS_IMAGE], dtype=np.float32)
        if self.taxonomy is not None:
            targets = [list(t) if t is not None else [] for t in batch["targets"]]
            out[LABELS] = self.taxonomy.multi_hot(targets).astype(np.float32)
        return out


def input_columns(*, text: bool, images: bool) -> list[str]:
    return ([TEXT] if text else []) + ([PIXELS, HAS_IMAGE] if images else [])


def catalog_stream(
    frame: pd.DataFrame,
    *,
    text: bool,
    image_size: int | None,
    taxonomy: Taxonomy | None,
    batch_size: int,
):
    """A Ray Dataset of model inputs (and labels) for a frame of products.

    Images are decoded inside the stream, batch by batch, each time it is
    iterated: no decoded pixels are ever stored.  Text-only models get no image
    columns.
    """
    import ray.data

    wanted: Sequence[str] = [
        *(TEXT_FIELDS if text else ()),
        *(["image"] if image_size is not None else []),
        *(["targets"] if taxonomy is not None else []),
    ]
    missing = [c for c in ("image", "targets") if c in wanted and c not in frame]
    if missing:
        raise ValueError(f"the frame lacks the column(s) {missing}")
    cols = [c for c in wanted if c in frame.columns]
    if text and not any(c in frame.columns for c in TEXT_FIELDS):
        raise ValueError(f"the frame has none of the text columns {TEXT_FIELDS}")
    # Several blocks, so Ray Data decodes images in parallel tasks (one block
    # is one task) while the model trains on earlier batches.
    rows = frame[cols].reset_index(drop=True)
    step = max(BLOCK_ROWS, batch_size)
    ds = ray.data.from_pandas(
        [rows.iloc[i : i + step] for i in range(0, max(len(rows), 1), step)]
    )
    if image_size is not None:
        ds = with_images(ds, image_size, batch_size=batch_size, dtype="uint8")
    return ds.map_batches(
        ModelInputs(text=text, images=image_size is not None, taxonomy=taxonomy),
        batch_format="numpy",
        batch_size=batch_size,
    )
