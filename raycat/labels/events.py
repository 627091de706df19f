"""Label events: who said a product is (or is not) in a category, and why.

A positive label propagates to every ancestor (a product in a child category is
in its parent); a negative one propagates to every descendant (a product not in
a category is in none of its children).  Propagated events keep the labeler,
iteration and strategy of the event they came from and record it in
``derived_from``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from raycat.errors import LabelError
from raycat.taxonomy import Taxonomy


class Source(StrEnum):
    """Where a label came from."""

    RULE = "rule"  # the old keyword-rule system
    GROUND_TRUTH = "ground_truth"  # the curated test set
    HUMAN = "human"  # a labeler, through the labeling page or Label Studio
    ORACLE = "oracle"  # a simulated labeler answering from ground truth


@dataclass(frozen=True)
class LabelEvent:
    product_id: str
    category: str
    value: int  # 1: the product is in the category; 0: it is not
    source: Source
    labeler: str = ""  # a person, a rule name, "oracle", "ground_truth"
    iteration: int = 0  # the active-learning iteration that asked for it
    strategy: str | None = None  # random | disagreement | uncertainty | ...
    time: float = field(default_factory=time.time)
    derived_from: str | None = None  # the category whose label implied this one

    def __post_init__(self) -> None:
        if self.value not in (0, 1):
            raise LabelError(
                f"label for product {self.product_id!r}, category {self.category!r}: "
                f"value must be 0 or 1, got {self.value!r}"
            )
        try:
            object.__setattr__(self, "source", Source(self.source))
        except ValueError:
            raise LabelError(
                f"label for product {self.product_id!r}: source must be one of "
                f"{[s.value for s in Source]}, got {self.source!r}"
            ) from None
        if not self.product_id:
            raise LabelError(f"label for category {self.category!r}: empty product id")


def propagate(events: Iterable[LabelEvent], taxonomy: Taxonomy) -> list[LabelEvent]:
    """Add the implied events: positives to ancestors, negatives to descendants.

    Raises :class:`LabelError` when one labeler, in one iteration, says a product
    is both in and not in a category (directly or through the tree), naming the
    product and both categories.
    """
    out: dict[tuple[str, str, str, int, str], LabelEvent] = {}
    for ev in events:
        if ev.category not in taxonomy:
            raise LabelError(
                f"label for product {ev.product_id!r}: unknown category "
                f"{ev.category!r}; use a category id of the taxonomy, such as "
                f"{taxonomy.ids[0]!r}"
            )
        implied = (
            taxonomy.ancestors(ev.category)
            if ev.value == 1
            else taxonomy.descendants(ev.category)
        )
        batch = [ev] + [
            replace(ev, category=c, derived_from=ev.category) for c in implied
        ]
        for e in batch:
            key = (e.labeler, e.product_id, e.category, e.iteration, e.source.value)
            seen = out.get(key)
            if seen is not None and seen.value != e.value:
                a = seen.derived_from or seen.category
                b = e.derived_from or e.category
                raise LabelError(
                    f"contradictory labels from labeler {e.labeler!r} (iteration "
                    f"{e.iteration}) for product {e.product_id!r}: category "
                    f"{e.category!r} is {seen.value} through {a!r} and {e.value} "
                    f"through {b!r}; a product in a category is in its parent, and "
                    "one not in a category is in none of its children"
                )
            if seen is None or seen.derived_from is not None:
                out[key] = e
    return list(out.values())
