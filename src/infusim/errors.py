"""The one error family of infusim: every message names the field and what is allowed."""

from __future__ import annotations


class InfusimError(Exception):
    """A problem the user can fix: bad input, unknown name, corrupt file.

    ``field`` is the dotted path of the offending input (``administration.dose``), or the thing
    that failed (``scenario``, ``output``); ``str(error)`` is one line: ``field: message``.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class ScenarioError(InfusimError):
    """The scenario file is missing, malformed or holds a value infusim cannot accept."""


class OutputError(InfusimError):
    """The output folder cannot be written safely (foreign content, permission)."""


class DataError(InfusimError):
    """A bundled or user-supplied data table is corrupt or lacks a unit or a source."""
