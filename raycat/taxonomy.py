"""The category tree: stable path-based ids, closure of label sets, consistency.

A category's id is its path of slugs joined by ``/`` (``home-furnishing/bed-linen``),
so the same category keeps the same id across catalog versions as long as its
path does not change.  The tree has an implicit root that is never a category:
top-level categories have no parent.

Categories are kept in a fixed order (depth first, then path), and every
per-category matrix in raycat (multi-hot labels, probabilities) uses that order
for its columns: ``taxonomy.ids[j]`` names column ``j``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from raycat.errors import TaxonomyError

PATH_SEPARATOR = " > "
"""How raycat writes a category path for people (`Home Furnishing > Bed Linen`)."""


def slugify(name: str) -> str:
    """Turn a category name into the id fragment used for it.

    >>> slugify("Curtains & Accessories")
    'curtains-accessories'
    """
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-").lower()
    return text


@dataclass
class Category:
    """One node of the tree."""

    id: str
    name: str
    parent: str | None
    depth: int
    children: list[str] = field(default_factory=list)

    @property
    def is_leaf(self) -> bool:
        return not self.children


class Taxonomy:
    """A tree of categories.

    Build one with :meth:`from_paths` (category paths such as
    ``["Home Furnishing", "Bed Linen"]``) or :meth:`from_edges` (a parent/child
    table).  Both name the offending row in their errors.
    """

    def __init__(self, categories: Iterable[Category]):
        cats = sorted(categories, key=lambda c: (c.depth, c.id))
        self._by_id: dict[str, Category] = {c.id: c for c in cats}
        self.ids: list[str] = [c.id for c in cats]
        self.index: dict[str, int] = {cid: i for i, cid in enumerate(self.ids)}
        for c in cats:
            c.children.sort()
        self._by_path = {self.path_str(c.id).lower(): c.id for c in cats}
        parents = [self.index[c.parent] if c.parent else -1 for c in cats]
        self.parent_index = np.asarray(parents, dtype=np.int64)
        self.depths = np.asarray([c.depth for c in cats], dtype=np.int64)
        # ancestor_matrix[i, j] = 1 when j is i or an ancestor of i.
        n = len(cats)
        anc = np.eye(n, dtype=np.uint8)
        for i in range(n):
            p = parents[i]
            while p >= 0:
                anc[i, p] = 1
                p = parents[p]
        self.ancestor_matrix = anc

    # -- construction ---------------------------------------------------------

    @classmethod
    def from_paths(
        cls, paths: Iterable[Sequence[str]], *, source: str = "paths"
    ) -> Taxonomy:
        """Build the tree from category paths, one per row.

        Every prefix of a path becomes a category.  ``source`` names the input in
        error messages.
        """
        cats: dict[str, Category] = {}
        for row, path in enumerate(paths):
            names = [str(p).strip() for p in path]
            if not names or any(not n for n in names):
                raise TaxonomyError(
                    f"{source}, row {row}: empty category path or empty element in "
                    f"{list(path)!r}; every element of a path must be a non-empty "
                    "name. Fix the row or drop it from the catalog."
                )
            parent = None
            for depth, name in enumerate(names, start=1):
                slug = slugify(name)
                if not slug:
                    raise TaxonomyError(
                        f"{source}, row {row}: category name {name!r} has no letters "
                        "or digits, so it cannot get an id; rename it."
                    )
                cid = f"{parent}/{slug}" if parent else slug
                known = cats.get(cid)
                if known is None:
                    cats[cid] = Category(cid, name, parent, depth)
                    if parent:
                        cats[parent].children.append(cid)
                elif known.name != name and known.name.lower() != name.lower():
                    raise TaxonomyError(
                        f"{source}, row {row}: duplicate children under "
                        f"{parent or 'the root'!r}: {known.name!r} and {name!r} both "
                        f"map to id {cid!r}; rename one of them."
                    )
                parent = cid
        if not cats:
            raise TaxonomyError(f"{source}: no categories found; the taxonomy is empty")
        return cls(cats.values())

    @classmethod
    def from_edges(
        cls,
        edges: Iterable[tuple[str | None, str]],
        *,
        source: str = "parent/child table",
    ) -> Taxonomy:
        """Build the tree from ``(parent_name, child_name)`` rows.

        A row with an empty parent makes a top-level category.  Names must be
        unique across the table, since a child is referred to by name.
        """
        parent_of: dict[str, str | None] = {}
        row_of: dict[str, int] = {}
        for row, (parent, child) in enumerate(edges):
            child = (child or "").strip()
            parent = (parent or "").strip() or None
            if not child:
                raise TaxonomyError(
                    f"{source}, row {row}: empty child name; every row needs a child."
                )
            if child in parent_of:
                raise TaxonomyError(
                    f"{source}, row {row}: duplicate child {child!r} (first seen in "
                    f"row {row_of[child]}); a category has exactly one parent."
                )
            if parent == child:
                raise TaxonomyError(
                    f"{source}, row {row}: cycle: {child!r} is its own parent."
                )
            parent_of[child] = parent
            row_of[child] = row
        for child, parent in parent_of.items():
            if parent is not None and parent not in parent_of:
                raise TaxonomyError(
                    f"{source}, row {row_of[child]}: unknown parent {parent!r} of "
                    f"{child!r}; add a row for {parent!r} (with an empty parent if "
                    "it is top-level)."
                )

        paths: list[list[str]] = []
        for child in parent_of:
            path = [child]
            seen = {child}
            node = parent_of[child]
            while node is not None:
                if node in seen:
                    raise TaxonomyError(
                        f"{source}, row {row_of[child]}: cycle through "
                        f"{' -> '.join([*path, node])}; the parent/child table "
                        "must form a tree."
                    )
                seen.add(node)
                path.append(node)
                node = parent_of[node]
            paths.append(path[::-1])
        return cls.from_paths(paths, source=source)

    # -- lookups ----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, cid: object) -> bool:
        return cid in self._by_id

    def __getitem__(self, cid: str) -> Category:
        try:
            return self._by_id[cid]
        except KeyError:
            raise TaxonomyError(
                f"unknown category id {cid!r}; known ids look like "
                f"{self.ids[:3]!r} ({len(self.ids)} in all)"
            ) from None

    def parent(self, cid: str) -> str | None:
        return self[cid].parent

    def depth(self, cid: str) -> int:
        return self[cid].depth

    def ancestors(self, cid: str) -> list[str]:
        """Ancestors of ``cid``, nearest first, root excluded."""
        out = []
        node = self[cid].parent
        while node is not None:
            out.append(node)
            node = self._by_id[node].parent
        return out

    def descendants(self, cid: str) -> list[str]:
        """Every category below ``cid``, breadth first."""
        out: list[str] = []
        frontier = list(self[cid].children)
        while frontier:
            out.extend(frontier)
            frontier = [g for c in frontier for g in self._by_id[c].children]
        return out

    @property
    def leaves(self) -> list[str]:
        return [c for c in self.ids if self._by_id[c].is_leaf]

    @property
    def roots(self) -> list[str]:
        """The top-level categories."""
        return [c for c in self.ids if self._by_id[c].parent is None]

    @property
    def max_depth(self) -> int:
        return int(self.depths.max()) if len(self.ids) else 0

    def top_level(self, cid: str) -> str:
        """The top-level ancestor of ``cid`` (itself when top-level)."""
        anc = self.ancestors(cid)
        return anc[-1] if anc else cid

    def level_sizes(self) -> dict[int, int]:
        values, counts = np.unique(self.depths, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts, strict=True)}

    def path(self, cid: str) -> list[str]:
        """The names from the top-level category down to ``cid``."""
        return [self._by_id[c].name for c in [*self.ancestors(cid)[::-1], cid]]

    def path_str(self, cid: str) -> str:
        return PATH_SEPARATOR.join(self.path(cid))

    def resolve(self, ref: str, *, where: str = "") -> str:
        """Find a category by id or by its path of names (``A > B``).

        Raises :class:`TaxonomyError` naming ``where`` when nothing matches.
        """
        if ref in self._by_id:
            return ref
        cid = self._by_path.get(
            PATH_SEPARATOR.join(p.strip() for p in ref.split(">")).lower()
        )
        if cid is None:
            prefix = f"{where}: " if where else ""
            raise TaxonomyError(
                f"{prefix}unknown category {ref!r}; give a category id such as "
                f"{self.ids[0]!r} or a path of names such as "
                f"{self.path_str(self.ids[0])!r}"
            )
        return cid

    def id_for_path(self, names: Sequence[str]) -> str | None:
        """The id of the category at this path of names, or ``None``."""
        key = PATH_SEPARATOR.join(n.strip() for n in names).lower()
        return self._by_path.get(key)

    # -- label sets and matrices ----------------------------------------------

    def closure(self, labels: Iterable[str]) -> set[str]:
        """The label set with every ancestor added (a product in a child is in
        its parent too)."""
        out: set[str] = set()
        for cid in labels:
            if cid not in out:
                out.add(cid)
                out.update(self.ancestors(cid))
        return out

    def multi_hot(self, label_sets: Sequence[Iterable[str]]) -> np.ndarray:
        """A ``(len(label_sets), len(self))`` 0/1 matrix, closed under ancestors."""
        y = np.zeros((len(label_sets), len(self.ids)), dtype=np.uint8)
        for row, labels in enumerate(label_sets):
            idx = [self.index[c] for c in labels]
            if idx:
                y[row] = self.ancestor_matrix[idx].max(axis=0)
        return y

    def consistent(self, probs: np.ndarray, *, mode: str = "min") -> np.ndarray:
        """Make per-category probabilities satisfy P(child) <= P(parent).

        ``probs`` has one column per category in :attr:`ids` order.
        ``mode="min"`` caps each category by its parent, top down (a child is
        no more likely than its parent); ``mode="max"`` raises each parent to
        its most likely descendant, bottom up.  Returns a new array.
        """
        probs = np.asarray(
            probs, dtype=np.float64 if probs.dtype == np.float64 else np.float32
        )
        if probs.ndim != 2 or probs.shape[1] != len(self.ids):
            raise TaxonomyError(
                f"probabilities must have shape (n_products, {len(self.ids)}); got "
                f"{probs.shape}"
            )
        out = probs.copy()
        order = np.argsort(self.depths, kind="stable")
        if mode == "min":
            for j in order:
                p = self.parent_index[j]
                if p >= 0:
                    np.minimum(out[:, j], out[:, p], out=out[:, j])
        elif mode == "max":
            for j in order[::-1]:
                p = self.parent_index[j]
                if p >= 0:
                    np.maximum(out[:, p], out[:, j], out=out[:, p])
        else:
            raise TaxonomyError(f"mode must be 'min' or 'max'; got {mode!r}")
        return out

    def is_consistent(self, probs: np.ndarray, *, atol: float = 1e-7) -> bool:
        parents = self.parent_index
        has_parent = parents >= 0
        child_cols = np.flatnonzero(has_parent)
        return bool(
            np.all(probs[:, child_cols] <= probs[:, parents[child_cols]] + atol)
        )

    # -- persistence -----------------------------------------------------------

    def to_json(self) -> dict:
        return {
            "categories": [
                {"id": c, "name": self._by_id[c].name, "parent": self._by_id[c].parent}
                for c in self.ids
            ]
        }

    @classmethod
    def from_json(cls, data: dict) -> Taxonomy:
        cats = {}
        for row in data["categories"]:
            cats[row["id"]] = Category(row["id"], row["name"], row["parent"], 0)
        for c in cats.values():
            d, node = 1, c.parent
            while node is not None:
                d, node = d + 1, cats[node].parent
            c.depth = d
            if c.parent:
                cats[c.parent].children.append(c.id)
        return cls(cats.values())

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Taxonomy:
        return cls.from_json(json.loads(Path(path).read_text()))
