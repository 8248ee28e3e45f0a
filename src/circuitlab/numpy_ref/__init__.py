"""The NumPy twin: the same transformer forward pass in plain NumPy, for learners and as an oracle.

cfg, params = load_npz(export_npz(model, "model.npz"))
logits, acts = forward(params, cfg, tokens)   # acts["blocks.0.attn.hook_pattern"], ...
"""

from .forward import ACTIVATIONS, attention, erf, forward, mlp, normalize, rotary, softmax
from .io import export_npz, load_npz

__all__ = [
    "ACTIVATIONS",
    "attention",
    "erf",
    "export_npz",
    "forward",
    "load_npz",
    "mlp",
    "normalize",
    "rotary",
    "softmax",
]
