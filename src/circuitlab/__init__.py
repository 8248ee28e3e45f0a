"""circuitlab: a laboratory for mechanistic interpretability of transformers.

`from circuitlab import HookedTransformer, HookedTransformerConfig` gives the classic TransformerLens
API; `circuitlab.numpy_ref` is a pure-NumPy twin of the forward pass. Names are imported on first
use, so `import circuitlab.numpy_ref` works without loading torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from typing import Any

__version__ = "0.1.0"

# Large CPU tensors (activations, caches) on transparent huge pages: PyTorch's own switch, read when torch
# first allocates, so it applies when circuitlab is imported before any tensor is made. Without it, touching
# fresh 4 KiB pages costs a full GPT-2-small run_with_cache about a quarter of its time on Linux. A value
# the user set (e.g. THP_MEM_ALLOC_ENABLE=0) wins.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

_EXPORTS = {
    "ActivationCache": "circuitlab.model",
    "CheckpointError": "circuitlab.model",
    "FactoredMatrix": "circuitlab.model",
    "HookNameError": "circuitlab.model",
    "HookPoint": "circuitlab.model",
    "HookedTransformer": "circuitlab.model",
    "HookedTransformerConfig": "circuitlab.model",
    "HookedTransformerKeyValueCache": "circuitlab.model",
    "ShapeError": "circuitlab.model",
    "get_act_name": "circuitlab.model",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")  # `circuitlab.utils` without importing it first
    raise AttributeError(f"module 'circuitlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(types.ModuleType):
    """Keeps `circuitlab.FactoredMatrix` (and the other class names) the class after the alias module of
    the same name is imported (`from circuitlab.FactoredMatrix import FactoredMatrix`, TransformerLens's
    path), which would otherwise bind the attribute to the module, as TransformerLens's own package does."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
