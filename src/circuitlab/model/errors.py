"""Errors that TransformerLens code catches under its own types.

Where TransformerLens checks an argument with `assert`, we raise one of these: each is a `ValueError`
with a clear message *and* an `AssertionError`, so both `except ValueError` and
`pytest.raises(AssertionError)` hold.
"""

from __future__ import annotations


class TLCheckError(ValueError, AssertionError):
    """A bad argument where TransformerLens raises `AssertionError`."""


class ShapeError(TLCheckError):
    """A bad shape or size (FactoredMatrix products, non-square eigenvalues, `remove_batch_dim`, ...)."""
