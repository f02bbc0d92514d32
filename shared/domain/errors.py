"""Domain errors; api/errors.py maps them to HTTP statuses for the JSON API and the UI alike."""

from __future__ import annotations


class NotFound(LookupError):
    """No sweep or run with that id."""


class Conflict(Exception):
    """The request does not fit the current state (e.g. cancelling a finished run)."""


class InvalidInput(ValueError):
    """A field outside what the service accepts (e.g. a sweep name with a control character)."""


class Forbidden(Exception):
    """The token may not do this (its role, or another token's sweep)."""
