"""circuitlab: a laboratory for mechanistic interpretability of transformers.

`from circuitlab import HookedTransformer, HookedTransformerConfig` gives the classic TransformerLens
API; `circuitlab.numpy_ref` is a pure-NumPy twin of the forward pass.
"""

from .model import (
    ActivationCache,
    CheckpointError,
    FactoredMatrix,
    HookedTransformer,
    HookedTransformerConfig,
    HookNameError,
    HookPoint,
    get_act_name,
)

__version__ = "0.1.0"

__all__ = [
    "ActivationCache",
    "CheckpointError",
    "FactoredMatrix",
    "HookNameError",
    "HookPoint",
    "HookedTransformer",
    "HookedTransformerConfig",
    "__version__",
    "get_act_name",
]
