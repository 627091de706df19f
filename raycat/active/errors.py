"""The exception the active-learning core raises on bad input."""

from __future__ import annotations

from raycat.errors import RaycatError


class ActiveLearningError(RaycatError):
    """An active-learning input or setting is malformed or inconsistent."""
