"""Reading product images: existence checks and decoding.

Images are always decoded where they are used (inside Ray Data's
``map_batches`` for training and scoring); nothing here stores decoded pixels
or image features.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow.fs as pafs
from PIL import Image, UnidentifiedImageError

from raycat.config import is_uri

logger = logging.getLogger(__name__)

# Pillow refuses images over ~89 Mpx by default; catalog photos are far smaller,
# so anything above this is treated as unreadable rather than decoded slowly.
MAX_IMAGE_PIXELS = 40_000_000


def read_bytes(location: str) -> bytes:
    """The raw bytes of an image at a local path or filesystem URI."""
    if is_uri(location):
        fs, inner = pafs.FileSystem.from_uri(location)
        with fs.open_input_stream(inner) as f:
            return f.read()
    with open(location, "rb") as f:
        return f.read()


def decode(data: bytes, size: int) -> np.ndarray:
    """Decode image bytes into a ``(size, size, 3)`` uint8 RGB array.

    The image is resized (aspect ratio not kept: catalog photos are centred
    objects and every backbone takes a square input).  Raises ``OSError`` or
    ``ValueError`` for bytes that are not a readable image.
    """
    with Image.open(io.BytesIO(data)) as img:
        if img.width * img.height > MAX_IMAGE_PIXELS:
            raise ValueError(f"image of {img.width}x{img.height} pixels is too large")
        img.draft("RGB", (size, size))  # JPEG: decode at reduced scale, much faster
        rgb = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)


def load_image(location: str | None, size: int) -> tuple[np.ndarray, bool]:
    """Read and decode one image; a missing or unreadable one gives a blank
    array and ``False``."""
    if location:
        try:
            return decode(read_bytes(location), size), True
        except (
            OSError,
            ValueError,
            UnidentifiedImageError,
            Image.DecompressionBombError,
        ):
            pass
    return np.zeros((size, size, 3), dtype=np.uint8), False


@dataclass
class ImageCheck:
    present: int = 0
    missing: list[str] = field(default_factory=list)  # product ids
    unreadable: list[str] = field(default_factory=list)


def _status(location: str | None) -> str:
    if not location:
        return "missing"
    try:
        data = read_bytes(location)
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "unreadable"
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # verify() misses truncated JPEGs; a full decode does not
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError):
        return "unreadable"
    return "present"


def check_images(
    product_ids: Sequence[str], locations: Sequence[str | None], *, workers: int = 8
) -> ImageCheck:
    """Open every image: which exist and decode, which are missing, which are
    unreadable.  Threads overlap the file reads; decoding releases the GIL."""
    result = ImageCheck()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for pid, status in zip(
            product_ids, pool.map(_status, locations, chunksize=64), strict=True
        ):
            if status == "present":
                result.present += 1
            else:
                getattr(result, status).append(pid)
    return result
