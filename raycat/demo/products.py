"""Drawing products (text, colour, image) from a :class:`DemoWorld`.

Every product has its own random stream, seeded by ``(seed, product index)``,
so a product comes out the same whichever worker draws it and however the
catalog is cut into chunks.  This module runs inside the worker processes and
imports neither pyarrow nor anything heavy.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from raycat.demo.images import encode_jpeg, render_image
from raycat.demo.names import ADJECTIVES, COLOURS, FILLER_NOUNS
from raycat.demo.world import DemoCategory, DemoWorld

COLUMNS = (
    "product_id",
    "title",
    "description",
    "colour",
    "image",
    "category_path",
    "image_category_path",
    "image_status",
)
"""The columns of ``products.parquet``, in order."""

IMAGE_OK, IMAGE_MISSING, IMAGE_CORRUPT = "ok", "missing", "corrupt"

# Product indices take the low 40 bits of a product's seed, the catalog seed
# the bits above: 10^12 products per catalog before streams could overlap.
_INDEX_BITS = 40
MAX_PRODUCTS = 1 << _INDEX_BITS

_MISMATCH_TRIES = 20
_COLOUR_NAMES = tuple(COLOURS)
_DESCRIPTION_TEMPLATES = (
    "{A} {w} for {f} and {f}.",
    "This {a} {w} comes with a {w} for {f}.",
    "Made by {b} in {c}.",
    "Pairs well with any {w} or {w}.",
    "{A} {f}, {a} feel and easy care.",
    "Ideal for {f}: {a}, {a} and built to last.",
    "Includes one {w} and a {a} {w}.",
    "A {c} {w} that suits {f}.",
)
_SLOT = re.compile(r"\{(\w)\}")


@dataclass(frozen=True)
class ProductParams:
    """The per-product settings a worker needs besides the world."""

    images_dir: str
    image_size: int
    missing_image_fraction: float
    corrupt_image_fraction: float
    mismatch_fraction: float
    missing_description_fraction: float
    # Products per image folder: 1000 keeps folders small for any file system.
    shard_size: int = 1000


@dataclass
class ProductRow:
    product_id: str
    title: str
    description: str | None
    colour: str
    image: str
    category_path: str
    image_category_path: str
    image_status: str
    # Indices into ``world.categories``; not written.
    category: int
    image_category: int


@dataclass
class ChunkResult:
    start: int
    stop: int
    columns: dict[str, list[str | None]]
    n_missing: int = 0
    n_corrupt: int = 0
    n_mismatched: int = 0
    image_bytes: int = 0
    label_counts: dict[int, int] = field(default_factory=dict)


def product_rng(seed: int, index: int) -> random.Random:
    return random.Random((seed << _INDEX_BITS) | index)


def product_id(index: int) -> str:
    return f"P{index:08d}"


def image_relpath(index: int, shard_size: int = 1000) -> str:
    """Where the image of product ``index`` lives, relative to the image root."""
    return f"{index // shard_size:04d}/{product_id(index)}.jpg"


def _category_word(rng: random.Random, world: DemoWorld, cat: DemoCategory) -> str:
    """A word for a description slot: mostly the category's own, sometimes an
    ancestor's or a shared one, now and then another category's or filler."""
    r = rng.random()
    pool = cat.words
    if 0.6 <= r < 0.8 and cat.ancestors:
        pool = world.categories[rng.choice(cat.ancestors)].words
    elif 0.8 <= r < 0.9 and cat.shared_words:
        pool = tuple(cat.shared_words)
    elif 0.9 <= r < 0.95:
        # Cross-selling text ("fits any ...") names other categories' things.
        pool = world.categories[rng.randrange(len(world.categories))].words
    elif r >= 0.95:
        pool = FILLER_NOUNS
    return rng.choice(pool)


def _title(
    rng: random.Random, world: DemoWorld, cat: DemoCategory, brand: str, colour: str
) -> str:
    tokens = rng.sample(cat.words, rng.randint(1, 2))
    if cat.ancestors and rng.random() < 0.4:
        tokens.append(rng.choice(world.categories[cat.ancestors[0]].words))
    if rng.random() < 0.3:
        tokens.append(cat.name_word)
    if cat.shared_words and rng.random() < 0.25:
        tokens.append(rng.choice(cat.shared_words))
    if rng.random() < 0.08:
        other = world.categories[rng.randrange(len(world.categories))]
        tokens.append(rng.choice(other.words))
    if rng.random() < 0.5:
        tokens.append(rng.choice(ADJECTIVES))
    rng.shuffle(tokens)
    if rng.random() < 0.5:
        tokens.insert(0 if rng.random() < 0.5 else len(tokens), colour)
    if rng.random() < 0.85:
        tokens.insert(0, brand)
    return " ".join(t[:1].upper() + t[1:] for t in tokens)


def _description(
    rng: random.Random, world: DemoWorld, cat: DemoCategory, brand: str, colour: str
) -> str:
    def fill(match: re.Match[str]) -> str:
        slot = match.group(1)
        if slot == "w":
            return _category_word(rng, world, cat)
        if slot in ("a", "A"):
            word = rng.choice(ADJECTIVES)
            return word.capitalize() if slot == "A" else word
        if slot == "f":
            return rng.choice(FILLER_NOUNS)
        if slot == "b":
            return brand
        return colour

    n = rng.randint(2, 4)
    return " ".join(
        _SLOT.sub(fill, rng.choice(_DESCRIPTION_TEMPLATES)) for _ in range(n)
    )


def describe_product(
    world: DemoWorld, params: ProductParams, index: int, rng: random.Random
) -> ProductRow:
    """Draw everything about product ``index`` except its pixels.

    ``rng`` must be :func:`product_rng` for this product; it is left where the
    image drawing continues from.
    """
    cats = world.categories
    category = rng.choices(world.label_pool, cum_weights=world.label_cum_weights)[0]
    cat = cats[category]
    top = world.top_of(category)

    if rng.random() < 0.7:
        brand = world.brands[rng.choice(world.top_brands[top])]
    else:
        brand = rng.choice(world.brands)
    if rng.random() < 0.5:
        colour = rng.choice(cat.colours)
    else:
        colour = rng.choice(_COLOUR_NAMES)
    title = _title(rng, world, cat, brand, colour)
    description: str | None = _description(rng, world, cat, brand, colour)
    if rng.random() < params.missing_description_fraction:
        description = None

    r = rng.random()
    if r < params.missing_image_fraction:
        status = IMAGE_MISSING
    elif r < params.missing_image_fraction + params.corrupt_image_fraction:
        status = IMAGE_CORRUPT
    else:
        status = IMAGE_OK
    image_category = category
    if rng.random() < params.mismatch_fraction:
        # A leaf outside the product's own subtree; a few tries suffice unless
        # the subtree is nearly the whole tree, and then there is no mismatch.
        for _ in range(_MISMATCH_TRIES):
            other = rng.choice(world.leaves)
            if other != category and category not in cats[other].ancestors:
                image_category = other
                break

    return ProductRow(
        product_id=product_id(index),
        title=title,
        description=description,
        colour=colour,
        image=image_relpath(index, params.shard_size),
        category_path=cat.path_str,
        image_category_path=cats[image_category].path_str,
        image_status=status,
        category=category,
        image_category=image_category,
    )


def generate_chunk(
    world: DemoWorld, params: ProductParams, start: int, stop: int
) -> ChunkResult:
    """Draw products ``start..stop-1``, write their image files and return their
    table columns."""
    columns: dict[str, list[str | None]] = {name: [] for name in COLUMNS}
    result = ChunkResult(start, stop, columns)
    images_dir = Path(params.images_dir)
    made_dirs: set[str] = set()

    for index in range(start, stop):
        rng = product_rng(world.seed, index)
        row = describe_product(world, params, index, rng)
        for name in COLUMNS:
            columns[name].append(getattr(row, name))
        result.label_counts[row.category] = result.label_counts.get(row.category, 0) + 1
        if row.image_category != row.category:
            result.n_mismatched += 1
        if row.image_status == IMAGE_MISSING:
            result.n_missing += 1
            continue

        style = world.categories[row.image_category]
        image = render_image(
            rng,
            size=params.image_size,
            colour=COLOURS[row.colour],
            shape=style.shape,
            texture=style.texture,
            layout=style.layout,
            noise_seed=world.seed,
        )
        data = encode_jpeg(image)
        if row.image_status == IMAGE_CORRUPT:
            result.n_corrupt += 1
            data = data[: int(len(data) * rng.uniform(0.3, 0.7))]
        folder = row.image.rpartition("/")[0]
        if folder not in made_dirs:
            os.makedirs(images_dir / folder, exist_ok=True)
            made_dirs.add(folder)
        (images_dir / row.image).write_bytes(data)
        result.image_bytes += len(data)
    return result


# Worker-process state, set once per process by ``init_worker`` so the world is
# pickled once per worker instead of once per chunk.
_STATE: tuple[DemoWorld, ProductParams] | None = None


def init_worker(world: DemoWorld, params: ProductParams) -> None:
    global _STATE
    _STATE = (world, params)


def run_chunk(start: int, stop: int) -> ChunkResult:
    if _STATE is None:
        raise RuntimeError(
            "run_chunk called in a process that init_worker did not set up"
        )
    world, params = _STATE
    return generate_chunk(world, params, start, stop)
