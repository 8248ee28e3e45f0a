"""The model's building blocks under TransformerLens's names (`transformer_lens.components`).

Each takes a `HookedTransformerConfig` or its dict, so TransformerLens code that instantiates or subclasses
a component runs unchanged: `Attention(cfg, attn_type="global", layer_id=None)`, `MLP(cfg)`,
`GatedMLP(cfg)`, `LayerNorm(cfg, length=None)`, `TransformerBlock(cfg, block_index)`, ...
"""

from __future__ import annotations

from typing import Any

from .model.attention import Attention
from .model.block import TransformerBlock
from .model.config import HookedTransformerConfig
from .model.embed import Embed, PosEmbed, Unembed
from .model.mlp import MLP
from .model.norms import LayerNorm, LayerNormPre, RMSNorm, RMSNormPre

AbstractAttention = Attention  # TL's base class of every attention: `isinstance(m, AbstractAttention)` finds them


class GroupedQueryAttention(Attention):
    """Attention whose `n_key_value_heads` key/value heads are shared by groups of query heads."""

    def __init__(
        self, cfg: HookedTransformerConfig | dict, attn_type: str | None = None, layer_id: int | None = None
    ) -> None:
        cfg = HookedTransformerConfig.unwrap(cfg)
        if cfg.n_key_value_heads is None:
            raise ValueError("GroupedQueryAttention needs cfg.n_key_value_heads (use Attention otherwise)")
        super().__init__(cfg, attn_type, layer_id)


class GatedMLP(MLP):
    """act(x W_gate) * (x W_in) + b_in, then W_out (SwiGLU for act_fn='silu'), whatever cfg.gated_mlp says."""

    def __init__(self, cfg: HookedTransformerConfig | dict, **kwargs: Any) -> None:
        super().__init__(cfg, gated=True, **kwargs)


__all__ = [
    "MLP",
    "AbstractAttention",
    "Attention",
    "Embed",
    "GatedMLP",
    "GroupedQueryAttention",
    "LayerNorm",
    "LayerNormPre",
    "PosEmbed",
    "RMSNorm",
    "RMSNormPre",
    "TransformerBlock",
    "Unembed",
]
