"""The hookable transformer: config, hook points, components, cache and circuits."""

from .cache import ActivationCache
from .config import HookedTransformerConfig
from .errors import ShapeError, TLCheckError
from .factored_matrix import FactoredMatrix
from .hook_points import HookedRootModule, HookNameError, HookPoint
from .io import CheckpointError
from .kv_cache import HookedTransformerKeyValueCache, HookedTransformerKeyValueCacheEntry
from .names import get_act_name
from .transformer import HookedTransformer, lm_cross_entropy_loss

__all__ = [
    "ActivationCache",
    "CheckpointError",
    "FactoredMatrix",
    "HookNameError",
    "HookPoint",
    "HookedRootModule",
    "HookedTransformer",
    "HookedTransformerConfig",
    "HookedTransformerKeyValueCache",
    "HookedTransformerKeyValueCacheEntry",
    "ShapeError",
    "TLCheckError",
    "get_act_name",
    "lm_cross_entropy_loss",
]
