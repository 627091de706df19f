"""Made-up but pronounceable words for demo catalogs.

Category names, keywords and brands of a synthetic catalog are invented from
syllables, so no real shop's taxonomy leaks in and every word belongs to
exactly the categories the generator gives it to.  The fixed English words
(colours, adjectives, filler nouns) are the shared noise every catalog has.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from raycat.demo.errors import DemoDataError

_ONSETS = (
    "b", "br", "c", "ch", "d", "dr", "f", "fl", "g", "gl", "gr", "h", "j", "k",
    "l", "m", "n", "p", "pl", "pr", "r", "s", "sh", "sk", "st", "t", "tr", "v",
    "w", "z",
)  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "io", "ou", "y")
_CODAS = ("", "", "", "l", "m", "n", "r", "s", "x", "nd", "rk", "st", "th")

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 40),
    "green": (40, 150, 60),
    "blue": (40, 80, 200),
    "yellow": (235, 210, 40),
    "orange": (240, 130, 30),
    "purple": (120, 50, 160),
    "pink": (240, 130, 180),
    "brown": (120, 75, 40),
    "black": (25, 25, 25),
    "white": (245, 245, 240),
    "grey": (128, 128, 128),
    "navy": (20, 30, 90),
    "teal": (20, 130, 130),
    "beige": (220, 200, 160),
}
"""Colour words and the RGB each is drawn with."""

ADJECTIVES = (
    "premium", "durable", "classic", "lightweight", "compact", "elegant",
    "modern", "soft", "sturdy", "handy", "stylish", "reliable", "deluxe",
    "everyday", "essential", "original", "portable", "slim", "bold", "smart",
)  # fmt: skip

FILLER_NOUNS = (
    "gift", "home", "travel", "office", "family", "weekend", "storage",
    "comfort", "style", "season", "kitchen", "garden", "party", "daily use",
    "outdoors", "friends", "quality", "design", "finish", "value",
)  # fmt: skip

GENERIC_NOUNS = ("Accessories", "Sets", "Wear", "Care", "Tools", "Kits", "Decor")
"""Real nouns some category names end with; they are shared across categories,
as "Accessories" is in a real taxonomy, so a rule keyed on them misfires."""


class WordMaker:
    """Invents unique lowercase words from syllables with a seeded generator.

    Every word it returns is new: it differs from all earlier ones and from the
    ``reserved`` words (the fixed English vocabulary), so a keyword's meaning is
    decided by the generator alone.
    """

    def __init__(self, rng: random.Random, reserved: Iterable[str] = ()) -> None:
        self._rng = rng
        self._used = {w.lower() for w in reserved}

    def word(self, min_syllables: int = 2, max_syllables: int = 3) -> str:
        rng = self._rng
        # The syllable space holds millions of words; running out means a
        # taxonomy far larger than the generator is meant for.
        for _ in range(10_000):
            n = rng.randint(min_syllables, max_syllables)
            parts = []
            for k in range(n):
                coda = rng.choice(_CODAS) if k == n - 1 or rng.random() < 0.3 else ""
                parts.append(rng.choice(_ONSETS) + rng.choice(_VOWELS) + coda)
            word = "".join(parts)
            if 4 <= len(word) <= 12 and word not in self._used:
                self._used.add(word)
                return word
        raise DemoDataError(
            f"could not invent a new word after {len(self._used)} words; the "
            "taxonomy is too large for the demo generator, lower width or depth"
        )

    def words(self, n: int) -> tuple[str, ...]:
        return tuple(self.word() for _ in range(n))

    def category_name(self) -> str:
        """A title-cased name such as ``Brindle``, ``Velora Kast`` or
        ``Shoumar Kits``."""
        r = self._rng.random()
        if r < 0.5:
            return self.word().capitalize()
        if r < 0.75:
            return f"{self.word().capitalize()} {self._rng.choice(GENERIC_NOUNS)}"
        return f"{self.word().capitalize()} {self.word(1, 2).capitalize()}"

    def brand(self) -> str:
        return self.word(2, 2).capitalize()
