"""`circuitlab.ActivationCache`: TransformerLens's module name; an alias of `circuitlab.model.cache`."""

from typing import Any

from .model import cache as _target
from .model.cache import ActivationCache

__all__ = ["ActivationCache"]


def __getattr__(name: str) -> Any:  # everything else the module has
    return getattr(_target, name)
