"""GPT-2 (`GPT2LMHeadModel`): learned positions, LayerNorm, fused qkv in Conv1D layout ([in, out])."""

from __future__ import annotations

from typing import Any

import torch

from ...model.config import HookedTransformerConfig
from .base import Architecture, Weight, act_fn


def _check(hf: Any) -> None:
    if getattr(hf, "scale_attn_by_inverse_layer_idx", False):
        raise ValueError("GPT-2 option scale_attn_by_inverse_layer_idx=True is not supported")
    if getattr(hf, "add_cross_attention", False):
        raise ValueError("GPT-2 with cross-attention is not supported (decoder-only models only)")


def _qkv_weights(t: torch.Tensor, cfg: HookedTransformerConfig) -> tuple[torch.Tensor, ...]:
    """c_attn.weight [d_model, 3 * heads * d_head] -> W_Q, W_K, W_V each [heads, d_model, d_head]."""
    return tuple(t.unflatten(1, (3, cfg.n_heads, cfg.d_head)).permute(1, 2, 0, 3).unbind(0))


def _qkv_biases(t: torch.Tensor, cfg: HookedTransformerConfig) -> tuple[torch.Tensor, ...]:
    return tuple(t.unflatten(0, (3, cfg.n_heads, cfg.d_head)).unbind(0))


def _out_to_heads(t: torch.Tensor, cfg: HookedTransformerConfig) -> torch.Tensor:
    """c_proj.weight [heads * d_head, d_model] -> W_O [heads, d_head, d_model]."""
    return t.unflatten(0, (cfg.n_heads, cfg.d_head))


H = "transformer.h.{l}"
GPT2 = Architecture(
    name="GPT-2",
    hf_classes=("GPT2LMHeadModel",),
    model_types=("gpt2",),
    check=_check,
    config={
        "n_layers": "n_layer",
        "d_model": "n_embd",
        "n_heads": "n_head",
        "d_mlp": lambda hf: hf.n_inner or 4 * hf.n_embd,
        "n_ctx": "n_positions",
        "d_vocab": "vocab_size",
        "act_fn": lambda hf: act_fn(hf.activation_function),
        "eps": "layer_norm_epsilon",
        "attn_scale": lambda hf: None if getattr(hf, "scale_attn_weights", True) else 1.0,
    },
    defaults=dict(normalization_type="LN", positional_embedding_type="standard"),
    weights=(
        Weight("transformer.wte.weight", "embed.W_E"),
        Weight("transformer.wpe.weight", "pos_embed.W_pos"),
        Weight(f"{H}.ln_1.weight", "blocks.{l}.ln1.w"),
        Weight(f"{H}.ln_1.bias", "blocks.{l}.ln1.b"),
        Weight(f"{H}.attn.c_attn.weight", tuple(f"blocks.{{l}}.attn.W_{x}" for x in "QKV"), _qkv_weights),
        Weight(f"{H}.attn.c_attn.bias", tuple(f"blocks.{{l}}.attn.b_{x}" for x in "QKV"), _qkv_biases),
        Weight(f"{H}.attn.c_proj.weight", "blocks.{l}.attn.W_O", _out_to_heads),
        Weight(f"{H}.attn.c_proj.bias", "blocks.{l}.attn.b_O"),
        Weight(f"{H}.ln_2.weight", "blocks.{l}.ln2.w"),
        Weight(f"{H}.ln_2.bias", "blocks.{l}.ln2.b"),
        Weight(f"{H}.mlp.c_fc.weight", "blocks.{l}.mlp.W_in"),  # Conv1D: already [in, out]
        Weight(f"{H}.mlp.c_fc.bias", "blocks.{l}.mlp.b_in"),
        Weight(f"{H}.mlp.c_proj.weight", "blocks.{l}.mlp.W_out"),
        Weight(f"{H}.mlp.c_proj.bias", "blocks.{l}.mlp.b_out"),
        Weight("transformer.ln_f.weight", "ln_final.w"),
        Weight("transformer.ln_f.bias", "ln_final.b"),
        Weight("lm_head.weight", "unembed.W_U", lambda t, cfg: t.T, tied="transformer.wte.weight"),
    ),
    ignore=(r"\.attn\.(masked_)?bias$",),
)
