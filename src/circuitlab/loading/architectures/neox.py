"""GPT-NeoX / Pythia (`GPTNeoXForCausalLM`): parallel attention + MLP (use_parallel_residual), rotary on
the first rotary_pct of each head (NeoX pairing, i with i + rotary_dim/2), fused qkv laid out per head as
[head, (q, k, v), d_head], untied unembedding `embed_out`."""

from __future__ import annotations

from typing import Any

import torch

from ...model.config import HookedTransformerConfig
from .base import Architecture, Weight, act_fn, check_plain_rope, linear_out_to_heads, rope_parameter, transpose


def _qkv_weights(t: torch.Tensor, cfg: HookedTransformerConfig) -> tuple[torch.Tensor, ...]:
    """query_key_value.weight [heads * 3 * d_head, d_model] -> W_Q, W_K, W_V [heads, d_model, d_head]."""
    return tuple(t.unflatten(0, (cfg.n_heads, 3, cfg.d_head)).permute(1, 0, 3, 2).unbind(0))


def _qkv_biases(t: torch.Tensor, cfg: HookedTransformerConfig) -> tuple[torch.Tensor, ...]:
    return tuple(t.unflatten(0, (cfg.n_heads, 3, cfg.d_head)).transpose(0, 1).unbind(0))


def _rotary_dim(hf: Any) -> int:
    d_head = hf.hidden_size // hf.num_attention_heads
    return int(d_head * rope_parameter(hf, "partial_rotary_factor", "rotary_pct", 1.0))


L = "gpt_neox.layers.{l}"
GPT_NEOX = Architecture(
    name="GPT-NeoX",
    hf_classes=("GPTNeoXForCausalLM",),
    model_types=("gpt_neox",),
    check=check_plain_rope,
    config={
        "n_layers": "num_hidden_layers",
        "d_model": "hidden_size",
        "n_heads": "num_attention_heads",
        "d_mlp": "intermediate_size",
        "n_ctx": "max_position_embeddings",
        "d_vocab": "vocab_size",
        "act_fn": lambda hf: act_fn(hf.hidden_act),
        "eps": "layer_norm_eps",
        "parallel_attn_mlp": lambda hf: bool(hf.use_parallel_residual),
        "rotary_dim": _rotary_dim,
        "rotary_base": lambda hf: float(rope_parameter(hf, "rope_theta", "rotary_emb_base", 10000.0)),
    },
    defaults=dict(normalization_type="LN", positional_embedding_type="rotary"),
    weights=(
        Weight("gpt_neox.embed_in.weight", "embed.W_E"),
        Weight(f"{L}.input_layernorm.weight", "blocks.{l}.ln1.w"),
        Weight(f"{L}.input_layernorm.bias", "blocks.{l}.ln1.b"),
        Weight(f"{L}.attention.query_key_value.weight", tuple(f"blocks.{{l}}.attn.W_{x}" for x in "QKV"), _qkv_weights),
        Weight(
            f"{L}.attention.query_key_value.bias",
            tuple(f"blocks.{{l}}.attn.b_{x}" for x in "QKV"),
            _qkv_biases,
            optional=True,
        ),
        Weight(f"{L}.attention.dense.weight", "blocks.{l}.attn.W_O", linear_out_to_heads),
        Weight(f"{L}.attention.dense.bias", "blocks.{l}.attn.b_O", optional=True),
        Weight(f"{L}.post_attention_layernorm.weight", "blocks.{l}.ln2.w"),
        Weight(f"{L}.post_attention_layernorm.bias", "blocks.{l}.ln2.b"),
        Weight(f"{L}.mlp.dense_h_to_4h.weight", "blocks.{l}.mlp.W_in", transpose),
        Weight(f"{L}.mlp.dense_h_to_4h.bias", "blocks.{l}.mlp.b_in"),
        Weight(f"{L}.mlp.dense_4h_to_h.weight", "blocks.{l}.mlp.W_out", transpose),
        Weight(f"{L}.mlp.dense_4h_to_h.bias", "blocks.{l}.mlp.b_out"),
        Weight("gpt_neox.final_layer_norm.weight", "ln_final.w"),
        Weight("gpt_neox.final_layer_norm.bias", "ln_final.b"),
        Weight(("embed_out.weight", "lm_head.weight"), "unembed.W_U", transpose, tied="gpt_neox.embed_in.weight"),
    ),
    ignore=(r"\.attention\.(masked_)?bias$", r"rotary_emb\.inv_freq$"),
)
