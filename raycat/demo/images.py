"""Small product images that carry the category, drawn with PIL.

The top-level category fixes the shape, the level-2 category the texture
printed on it and the level-3 category the layout (one shape, a pair, or one
shape in a frame); the product's colour word gives the colour.  Position,
size, rotation, background and pixel noise are random, so an image model has
something to learn but nothing to memorise.
"""

from __future__ import annotations

import functools
import io
import math
import random

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from raycat.demo.world import LAYOUTS, SHAPES, TEXTURES

JPEG_QUALITY = 85
# Uniform pixel noise of +-12 grey levels: visible, yet far below the contrast
# between a shape and its background.
NOISE_AMPLITUDE = 12
COLOUR_JITTER = 20

Point = tuple[float, float]
RGB = tuple[int, int, int]


def _rotated(points: list[Point], cx: float, cy: float, theta: float) -> list[Point]:
    c, s = math.cos(theta), math.sin(theta)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]


def _regular(n: int, r: float, *, inner: float | None = None) -> list[Point]:
    """A regular polygon (or a star when ``inner`` is the inner radius ratio)."""
    if inner is None:
        return [
            (r * math.cos(2 * math.pi * k / n), r * math.sin(2 * math.pi * k / n))
            for k in range(n)
        ]
    points = []
    for k in range(2 * n):
        rk = r if k % 2 == 0 else r * inner
        a = math.pi * k / n
        points.append((rk * math.cos(a), rk * math.sin(a)))
    return points


def _outline(shape: str, r: float) -> list[Point]:
    if shape == "square":
        return _regular(4, r * 0.9)
    if shape == "triangle":
        return _regular(3, r)
    if shape == "star":
        return _regular(5, r, inner=0.45)
    if shape == "diamond":
        return [(0.0, -r), (0.6 * r, 0.0), (0.0, r), (-0.6 * r, 0.0)]
    if shape == "hexagon":
        return _regular(6, r)
    if shape == "cross":
        w = 0.35 * r
        return [
            (-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w),
            (w, r), (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w),
        ]  # fmt: skip
    raise ValueError(f"no outline for shape {shape!r}")


def _draw_shape(
    mask: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, theta: float
) -> None:
    if shape in ("circle", "ring"):
        mask.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        if shape == "ring":
            h = 0.55 * r
            mask.ellipse((cx - h, cy - h, cx + h, cy + h), fill=0)
        return
    mask.polygon(_rotated(_outline(shape, r), cx, cy, theta), fill=255)


def _shade(colour: RGB) -> RGB:
    """A contrasting tone of the same hue, for the texture."""
    r, g, b = colour
    if 0.299 * r + 0.587 * g + 0.114 * b > 100:
        return int(r * 0.45), int(g * 0.45), int(b * 0.45)
    return int(r + (255 - r) * 0.6), int(g + (255 - g) * 0.6), int(b + (255 - b) * 0.6)


def _jitter(rng: random.Random, colour: RGB, amount: int) -> RGB:
    r, g, b = (min(255, max(0, v + rng.randint(-amount, amount))) for v in colour)
    return r, g, b


@functools.lru_cache(maxsize=8)
def _coordinates(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel columns as a row vector and pixel rows as a column vector, so that
    expressions in both broadcast to a whole image."""
    c = np.arange(size, dtype=np.float32)
    c.flags.writeable = False
    return c[None, :], c[:, None]


def _phase(t: np.ndarray, period: float) -> np.ndarray:
    """Position within the period, in [0, 1)."""
    q = t / period
    return q - np.floor(q)


def _texture_mask(texture: str, size: int, rng: random.Random) -> np.ndarray | None:
    """Where the texture's ink goes, as a boolean image; ``None`` for plain.

    Computed with array arithmetic rather than by drawing: a pattern of a
    hundred dots costs a few vector operations instead of a hundred ellipses.
    """
    step = max(4.0, size / rng.uniform(5.0, 8.0))
    off = rng.uniform(0.0, step)
    if texture == "plain":
        return None
    x, y = _coordinates(size)
    if texture == "stripes":
        a = rng.uniform(0.0, math.pi)
        return _phase(x * math.cos(a) + y * math.sin(a) + off, step) < 0.5
    if texture == "dots":
        u = _phase(x + off, step) - 0.5
        v = _phase(y + off, step) - 0.5
        return u * u + v * v <= 0.08
    if texture == "checks":
        cols = np.floor((x + off) / step).astype(np.int32)
        rows = np.floor((y + off) / step).astype(np.int32)
        return ((cols + rows) & 1) == 0
    if texture == "grid":
        return (_phase(x + off, step) * step < 1.0) | (
            _phase(y + off, step) * step < 1.0
        )
    if texture == "waves":
        # A zigzag line every ``step`` rows: a triangle wave of amplitude step/3.
        zigzag = (step / 3) * (np.abs(_phase(x, step) * 4 - 2) - 1)
        return _phase(y - zigzag + off, step) < max(1.0, step / 4) / step
    raise ValueError(f"unknown texture {texture!r}")


# bytes.translate table folding a random byte onto 0..2*NOISE_AMPLITUDE.
_NOISE_TABLE = bytes(b % (2 * NOISE_AMPLITUDE + 1) for b in range(256))
# Noise comes from windows of one larger noise image per (seed, size): 256 x 256
# window offsets, so neighbouring products rarely share a noise pattern, and
# cutting a window costs far less than drawing fresh noise for every image.
_NOISE_MARGIN = 256


@functools.lru_cache(maxsize=4)
def _noise_bank(seed: int, size: int) -> Image.Image:
    side = size + _NOISE_MARGIN
    rng = random.Random(f"raycat-demo-noise/{seed}/{size}")
    noise = rng.randbytes(side * side * 3).translate(_NOISE_TABLE)
    return Image.frombytes("RGB", (side, side), noise)


def render_image(
    rng: random.Random,
    *,
    size: int,
    colour: RGB,
    shape: int | None,
    texture: int | None,
    layout: int | None,
    noise_seed: int = 0,
) -> Image.Image:
    """Draw one product image.

    Style indices that are ``None`` (a product labelled with an inner category
    fixes only the upper levels) are drawn at random.  ``noise_seed`` picks the
    noise image the pixel noise is cut from.
    """
    shape_name = SHAPES[rng.randrange(len(SHAPES)) if shape is None else shape]
    texture_name = TEXTURES[
        rng.randrange(len(TEXTURES)) if texture is None else texture
    ]
    layout_name = LAYOUTS[rng.randrange(len(LAYOUTS)) if layout is None else layout]
    jittered = _jitter(rng, colour, COLOUR_JITTER)
    grey = rng.randint(175, 250)
    background = _jitter(rng, (grey, grey, grey), 10)

    # The shape's colour, with the texture printed on it.
    fill = Image.new("RGB", (size, size), jittered)
    ink = _texture_mask(texture_name, size, rng)
    if ink is not None:
        fill.paste(_shade(jittered), mask=Image.fromarray(ink))

    # Cut out by the shapes' outline and laid on the background.
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    n_shapes = 2 if layout_name == "pair" else 1
    for _ in range(n_shapes):
        scale = (0.14, 0.24) if n_shapes == 2 else (0.22, 0.38)
        r = size * rng.uniform(*scale)
        cx = rng.uniform(r, size - r)
        cy = rng.uniform(r, size - r)
        theta = rng.uniform(0.0, 2 * math.pi)
        _draw_shape(draw, shape_name, cx, cy, r, theta)
    image = Image.new("RGB", (size, size), background)
    image.paste(fill, mask=mask)
    if layout_name == "framed":
        inset = max(1, size // 20)
        ImageDraw.Draw(image).rectangle(
            (inset, inset, size - 1 - inset, size - 1 - inset),
            outline=jittered,
            width=max(1, size // 16),
        )

    # Pixel noise in +-NOISE_AMPLITUDE: a window of the noise image (bytes in
    # 0..255 folded onto 0..2A) added with an offset of -A.
    ox, oy = rng.randrange(_NOISE_MARGIN), rng.randrange(_NOISE_MARGIN)
    noise = _noise_bank(noise_seed, size).crop((ox, oy, ox + size, oy + size))
    return ImageChops.add(image, noise, 1.0, -NOISE_AMPLITUDE)


def encode_jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()
