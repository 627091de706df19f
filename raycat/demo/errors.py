"""The demo generator's own exception."""

from __future__ import annotations

from raycat.errors import RaycatError


class DemoDataError(RaycatError):
    """A demo-data setting is out of range or the output folder is unusable."""
