"""Domain exceptions that callers can catch by name.

Every message says what was wrong, where (setting, row, file), what was expected
and how to fix it.
"""

from __future__ import annotations


class RaycatError(Exception):
    """Base class of every error raycat raises on purpose."""


class ConfigError(RaycatError):
    """A pipeline config setting is missing, malformed or inconsistent."""


class CatalogError(RaycatError):
    """The catalog table cannot be read or a row is unusable."""


class TaxonomyError(RaycatError):
    """The taxonomy is not a tree, or a category is unknown."""


class RuleError(RaycatError):
    """An old-system rule is malformed or names an unknown category."""


class LabelError(RaycatError):
    """A label event is invalid or contradicts itself."""


class LabelStoreError(RaycatError):
    """The label store cannot be opened or written."""
