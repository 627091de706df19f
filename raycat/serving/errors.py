"""The errors of the scoring app, each mapped to an HTTP status."""

from __future__ import annotations

from raycat.errors import RaycatError


class ServingError(RaycatError):
    """A problem with the scoring app's setup (no model, bad settings)."""


class RequestError(ServingError):
    """A request the app refuses: says which field, what was wrong, the status."""

    def __init__(self, status_code: int, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.status_code = status_code
        self.field = field
        self.message = message


class AuthError(RequestError):
    """A write without a valid bearer token (401) or with no token configured
    on the server (503)."""

    def __init__(self, status_code: int, message: str):
        super().__init__(status_code, "Authorization", message)
