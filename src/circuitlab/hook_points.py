"""`circuitlab.hook_points`: TransformerLens's module name; an alias of `circuitlab.model.hook_points`."""

from typing import Any

from .model import hook_points as _target
from .model.hook_points import HookedRootModule, HookPoint, NameFilter
from .model.hook_points import _Hook as LensHandle  # what add_hook returns: `.hook.remove()`, `.is_permanent`

NamesFilter = NameFilter  # TransformerLens's name for it

__all__ = ["HookPoint", "HookedRootModule", "LensHandle", "NameFilter", "NamesFilter"]


def __getattr__(name: str) -> Any:  # everything else the module has
    return getattr(_target, name)
