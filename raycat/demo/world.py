"""The hidden "world" behind a synthetic catalog.

A :class:`DemoWorld` holds everything the generator decides once per seed: the
category tree with its made-up names, each category's keywords, the keywords
several categories share, the colours a category favours, the brands, how often
each category occurs, and how a category looks in an image (top level: shape,
level 2: texture, level 3: layout).  Products are then drawn from it one by one.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from raycat.demo.errors import DemoDataError
from raycat.demo.names import (
    ADJECTIVES,
    COLOURS,
    FILLER_NOUNS,
    GENERIC_NOUNS,
    WordMaker,
)
from raycat.taxonomy import PATH_SEPARATOR

SHAPES = ("circle", "square", "triangle", "star", "ring", "diamond", "cross", "hexagon")
TEXTURES = ("plain", "stripes", "dots", "checks", "grid", "waves")
LAYOUTS = ("single", "pair", "framed")

# Keywords per category: enough that a rule quoting half of them still misses
# many products (partial recall), few enough that each is seen often.
WORDS_PER_LEAF = 8
WORDS_PER_INNER = 5
# Zipf exponent of the leaf frequencies: 0.7 makes the most common leaf about
# 20 times as frequent as the rarest of 72, a plausible catalog imbalance.
LEAF_IMBALANCE = 0.7
MAX_CATEGORIES = 20_000


@dataclass
class DemoCategory:
    """One category of the demo taxonomy and what the generator knows of it."""

    index: int
    path: tuple[str, ...]
    parent: int | None
    ancestors: tuple[int, ...]  # nearest first
    words: tuple[str, ...]
    children: list[int] = field(default_factory=list)
    # Keywords this category shares with categories elsewhere in the tree.
    shared_words: list[str] = field(default_factory=list)
    colours: tuple[str, ...] = ()
    # Image style; None means "not fixed by this category" (drawn per product).
    shape: int | None = None
    texture: int | None = None
    layout: int | None = None

    @property
    def depth(self) -> int:
        return len(self.path)

    @property
    def is_leaf(self) -> bool:
        return not self.children

    @property
    def path_str(self) -> str:
        return PATH_SEPARATOR.join(self.path)

    @property
    def name_word(self) -> str:
        """The last word of the category's name, lowercased (what a title or a
        lazy rule would quote)."""
        return self.path[-1].split()[-1].lower()


@dataclass
class DemoWorld:
    seed: int
    categories: list[DemoCategory]
    brands: list[str]
    # Brands each top-level category favours (indices into ``brands``).
    top_brands: dict[int, list[int]]
    # The categories a product's ground truth is drawn from, with cumulative
    # weights for ``random.Random.choices``.
    label_pool: list[int]
    label_cum_weights: list[float]

    # Indices of the leaf categories, in tree order.
    leaves: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.leaves = [c.index for c in self.categories if c.is_leaf]

    def top_of(self, index: int) -> int:
        cat = self.categories[index]
        return cat.ancestors[-1] if cat.ancestors else index

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "brands": self.brands,
            "categories": [
                {
                    "path": c.path_str,
                    "words": list(c.words),
                    "shared_words": c.shared_words,
                    "colours": list(c.colours),
                    "shape": None if c.shape is None else SHAPES[c.shape],
                    "texture": None if c.texture is None else TEXTURES[c.texture],
                    "layout": None if c.layout is None else LAYOUTS[c.layout],
                }
                for c in self.categories
            ],
        }


def normalize_width(width: int | Sequence[int] | None, depth: int) -> tuple[int, ...]:
    """One width (children per node) per level, checked."""
    if depth < 1:
        raise DemoDataError(f"depth must be at least 1; got {depth}")
    if width is None:
        # 6 top-level categories with 4 and then 3 children each: 102 categories,
        # the low end of a real catalog's 10^2..10^3.
        widths = (6, 4, *([3] * (depth - 2)))[:depth]
    elif isinstance(width, int):
        widths = (width,) * depth
    else:
        widths = tuple(int(w) for w in width)
        if len(widths) != depth:
            raise DemoDataError(
                f"width has {len(widths)} entries ({list(widths)}) but depth is "
                f"{depth}; give one width per level or a single number"
            )
    if any(w < 1 for w in widths):
        raise DemoDataError(f"every width must be at least 1; got {list(widths)}")
    n_categories = sum(itertools.accumulate(widths, lambda a, b: a * b))
    if n_categories > MAX_CATEGORIES:
        raise DemoDataError(
            f"width {list(widths)} gives {n_categories} categories; the demo "
            f"generator makes at most {MAX_CATEGORIES}, lower width or depth"
        )
    if n_categories < 2:
        raise DemoDataError(
            f"width {list(widths)} gives a single category; a catalog needs at "
            "least 2, raise width"
        )
    return widths


def build_world(
    seed: int,
    widths: Sequence[int],
    *,
    inner_label_fraction: float = 0.05,
) -> DemoWorld:
    """Decide the taxonomy, vocabularies, brands and image styles for ``seed``."""
    # A string seed keeps this stream apart from the per-product streams, which
    # are seeded with integers.
    rng = random.Random(f"raycat-demo-world/{seed}")
    reserved = [*COLOURS, *ADJECTIVES, *FILLER_NOUNS, *GENERIC_NOUNS]
    maker = WordMaker(rng, reserved=[w for r in reserved for w in r.split()])

    categories: list[DemoCategory] = []
    frontier: list[int | None] = [None]
    for level, width in enumerate(widths):
        next_frontier: list[int | None] = []
        is_last = level == len(widths) - 1
        for parent in frontier:
            for _ in range(width):
                index = len(categories)
                up = categories[parent] if parent is not None else None
                cat = DemoCategory(
                    index=index,
                    path=(*(up.path if up else ()), maker.category_name()),
                    parent=parent,
                    ancestors=(up.index, *up.ancestors) if up else (),
                    words=maker.words(WORDS_PER_LEAF if is_last else WORDS_PER_INNER),
                    colours=tuple(rng.sample(list(COLOURS), 3)),
                )
                categories.append(cat)
                if up is not None:
                    up.children.append(index)
                next_frontier.append(index)
        frontier = next_frontier
    leaves = [c.index for c in categories if c.is_leaf]

    _assign_shared_words(categories, leaves, maker, rng)
    _assign_image_styles(categories, rng)

    n_tops = sum(1 for c in categories if c.parent is None)
    brands = [maker.brand() for _ in range(max(12, 4 * n_tops))]
    top_brands = {
        c.index: rng.sample(range(len(brands)), 4)
        for c in categories
        if c.parent is None
    }

    pool, cum = _label_weights(categories, leaves, rng, inner_label_fraction)
    return DemoWorld(seed, categories, brands, top_brands, pool, cum)


def _assign_shared_words(
    categories: list[DemoCategory],
    leaves: list[int],
    maker: WordMaker,
    rng: random.Random,
) -> None:
    # Words such as "classic" in a real shop mean different things in different
    # departments; here each shared word belongs to 2 or 3 leaves.
    n_shared = max(2, len(leaves) // 2)
    for word in maker.words(n_shared):
        k = min(len(leaves), rng.randint(2, 3))
        for leaf in rng.sample(leaves, k):
            categories[leaf].shared_words.append(word)


def _assign_image_styles(categories: list[DemoCategory], rng: random.Random) -> None:
    tops = [c for c in categories if c.parent is None]
    shapes = rng.sample(range(len(SHAPES)), len(SHAPES))
    for k, cat in enumerate(tops):
        # More top-level categories than shapes: shapes repeat and only texture
        # and text tell those apart.
        cat.shape = shapes[k % len(shapes)]

    options_by_depth = {2: len(TEXTURES), 3: len(LAYOUTS)}
    for parent in categories:
        n_options = options_by_depth.get(parent.depth + 1)
        if n_options is None:
            continue
        order = rng.sample(range(n_options), n_options)
        for k, child in enumerate(parent.children):
            if parent.depth + 1 == 2:
                categories[child].texture = order[k % n_options]
            else:
                categories[child].layout = order[k % n_options]

    # Children inherit what their ancestors fixed.
    for cat in categories:
        if cat.parent is not None:
            up = categories[cat.parent]
            cat.shape = up.shape
            if cat.texture is None:
                cat.texture = up.texture
            if cat.layout is None:
                cat.layout = up.layout


def _label_weights(
    categories: list[DemoCategory],
    leaves: list[int],
    rng: random.Random,
    inner_label_fraction: float,
) -> tuple[list[int], list[float]]:
    inner = [c.index for c in categories if not c.is_leaf]
    if not inner:
        inner_label_fraction = 0.0
    ranks = rng.sample(range(len(leaves)), len(leaves))
    raw = [1.0 / (r + 1) ** LEAF_IMBALANCE for r in ranks]
    total = sum(raw)
    weights = [(1.0 - inner_label_fraction) * w / total for w in raw]
    pool = list(leaves)
    if inner:
        pool += inner
        weights += [inner_label_fraction / len(inner)] * len(inner)
    return pool, list(itertools.accumulate(weights))
