"""`circuitlab.FactoredMatrix`: TransformerLens's module name; an alias of `circuitlab.model.factored_matrix`."""

from typing import Any

from .model import factored_matrix as _target
from .model.factored_matrix import FactoredMatrix

__all__ = ["FactoredMatrix"]


def __getattr__(name: str) -> Any:  # everything else the module has
    return getattr(_target, name)
