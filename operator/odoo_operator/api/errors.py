"""The one error every parser of the api package raises (model.py re-exports it, users.py uses it)."""

from __future__ import annotations


class SpecError(ValueError):
    """The spec cannot be acted on; a human has to change it (Stalled, reason InvalidSpec)."""
