"""`circuitlab.HookedTransformerConfig`: TransformerLens's module name; an alias of `circuitlab.model.config`."""

from typing import Any

from .model import config as _target
from .model.config import HookedTransformerConfig

__all__ = ["HookedTransformerConfig"]


def __getattr__(name: str) -> Any:  # everything else the module has
    return getattr(_target, name)
