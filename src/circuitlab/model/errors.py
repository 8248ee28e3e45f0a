"""Errors that TransformerLens code catches under its own types."""

from __future__ import annotations


class ShapeError(ValueError, AssertionError):
    """A bad shape or size. TransformerLens raises `AssertionError` in these places, so this is both:
    `except ValueError` and `pytest.raises(AssertionError)` each catch it."""
