"""The admin room's error: an action refused or failed, with the HTTP status it maps to."""

from __future__ import annotations

from nura.errors import NuraError


class AdminError(NuraError):
    """An action refused or failed; `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message

    @property
    def outcome(self) -> str:
        return "invalid" if self.status < 500 else "error"
