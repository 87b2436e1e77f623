"""The one exception tree of modelreg; each kind knows its exit code (SPEC §4)."""

from __future__ import annotations


class Error(Exception):
    """Base of every modelreg error: the operation failed (exit 1)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InvalidInput(Error):
    """Bad usage or invalid input: a name, ref, alias, metadata or path (exit 2)."""

    exit_code = 2


class NotFound(Error):
    """No registry, collection, version, alias or file by that name (exit 3)."""

    exit_code = 3


class Conflict(Error):
    """Refused: a conflict, a protected alias, a lock held too long (exit 4)."""

    exit_code = 4


class LockTimeout(Conflict):
    """A lock stayed held by a live process for longer than we wait."""


class IntegrityError(Error):
    """Stored data is corrupt or tampered with (exit 1)."""
