"""Product text: which fields make it, how it is split into words, colour words."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

TEXT_FIELDS = ("title", "description", "extra_text", "colour")

# Common colour words of English catalogs.  A config can replace the list
# (`text.colour_words`); components use it to treat colour as its own feature
# group or to remove it from the text.
DEFAULT_COLOUR_WORDS = [
    "beige",
    "black",
    "blue",
    "bronze",
    "brown",
    "copper",
    "cream",
    "crimson",
    "cyan",
    "gold",
    "golden",
    "gray",
    "grey",
    "green",
    "indigo",
    "ivory",
    "khaki",
    "lavender",
    "lime",
    "magenta",
    "maroon",
    "multicolor",
    "multicolour",
    "navy",
    "olive",
    "orange",
    "peach",
    "pink",
    "purple",
    "red",
    "rose",
    "silver",
    "tan",
    "teal",
    "turquoise",
    "violet",
    "white",
    "wine",
    "yellow",
]

_WORD = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-cased runs of letters and digits."""
    return _WORD.findall(text.lower())


def join_fields(
    batch: Mapping[str, Sequence[str]], fields: Iterable[str] = TEXT_FIELDS
) -> np.ndarray:
    """One string per product: the given text fields joined by spaces.

    ``batch`` maps column names to equal-length sequences (a pandas frame or a
    Ray Data batch); missing columns are skipped.
    """
    cols = [np.asarray(batch[f], dtype=object) for f in fields if f in batch]
    if not cols:
        raise KeyError(f"none of the text fields {list(fields)} is in the batch")
    out = cols[0].astype(str)
    for c in cols[1:]:
        out = np.char.add(np.char.add(out, " "), c.astype(str))
    return out.astype(object)


def colour_pattern(words: Iterable[str]) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(words))) + r")\b", re.I)


def strip_colours(texts: Sequence[str], words: Iterable[str]) -> list[str]:
    """The texts with every colour word removed."""
    pat = colour_pattern(words)
    return [pat.sub(" ", t) for t in texts]
