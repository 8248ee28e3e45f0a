"""Llama, Mistral and Qwen2 (`*ForCausalLM`): RMSNorm, rotary (NeoX pairing), SwiGLU, grouped-query attention.

Differences between the three are config switches: q/k/v biases (Qwen2 always, Llama with attention_bias),
an explicit head_dim (d_head != d_model / n_heads), sliding-window layers (Mistral's sliding_window, Qwen2's
layer_types) mapped to our local attention.
"""

from __future__ import annotations

from typing import Any

from .base import (
    Architecture,
    Weight,
    act_fn,
    bias_to_heads,
    check_plain_rope,
    linear_out_to_heads,
    linear_to_heads,
    rope_parameter,
    transpose,
)


def _d_head(hf: Any) -> int:
    return getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads


def _kv_heads(hf: Any) -> int | None:
    kv = getattr(hf, "num_key_value_heads", None) or hf.num_attention_heads
    return None if kv == hf.num_attention_heads else kv


def _attn_types(hf: Any) -> list[str] | None:
    layer_types = getattr(hf, "layer_types", None)
    if layer_types is not None:
        kinds = {"full_attention": "global", "sliding_attention": "local"}
        unknown = sorted(set(layer_types) - set(kinds))
        if unknown:
            raise ValueError(f"attention layer types {unknown} are not supported; supported: {sorted(kinds)}")
        types = [kinds[t] for t in layer_types]
        return types if "local" in types else None
    return ["local"] * hf.num_hidden_layers if getattr(hf, "sliding_window", None) else None


def _check(hf: Any) -> None:
    check_plain_rope(hf)
    if getattr(hf, "mlp_bias", False):
        raise ValueError("mlp_bias=True is not supported (the gated MLP has no bias on its gate)")


L = "model.layers.{l}"
A = f"{L}.self_attn"
LLAMA = Architecture(
    name="Llama",
    hf_classes=("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"),
    model_types=("llama", "mistral", "qwen2"),
    check=_check,
    config={
        "n_layers": "num_hidden_layers",
        "d_model": "hidden_size",
        "n_heads": "num_attention_heads",
        "d_head": _d_head,
        "n_key_value_heads": _kv_heads,
        "d_mlp": "intermediate_size",
        "n_ctx": "max_position_embeddings",
        "d_vocab": "vocab_size",
        "act_fn": lambda hf: act_fn(hf.hidden_act),
        "eps": "rms_norm_eps",
        "rotary_dim": lambda hf: int(_d_head(hf) * rope_parameter(hf, "partial_rotary_factor", "-", 1.0)),
        "rotary_base": lambda hf: float(rope_parameter(hf, "rope_theta", "rope_theta", 10000.0)),
        "attn_types": _attn_types,
        "window_size": lambda hf: getattr(hf, "sliding_window", None) if _attn_types(hf) else None,
    },
    defaults=dict(normalization_type="RMS", positional_embedding_type="rotary", gated_mlp=True),
    weights=(
        Weight("model.embed_tokens.weight", "embed.W_E"),
        Weight(f"{L}.input_layernorm.weight", "blocks.{l}.ln1.w"),
        Weight(f"{A}.q_proj.weight", "blocks.{l}.attn.W_Q", linear_to_heads),
        Weight(f"{A}.k_proj.weight", "blocks.{l}.attn.{kv}W_K", linear_to_heads),
        Weight(f"{A}.v_proj.weight", "blocks.{l}.attn.{kv}W_V", linear_to_heads),
        Weight(f"{A}.q_proj.bias", "blocks.{l}.attn.b_Q", bias_to_heads, optional=True),
        Weight(f"{A}.k_proj.bias", "blocks.{l}.attn.{kv}b_K", bias_to_heads, optional=True),
        Weight(f"{A}.v_proj.bias", "blocks.{l}.attn.{kv}b_V", bias_to_heads, optional=True),
        Weight(f"{A}.o_proj.weight", "blocks.{l}.attn.W_O", linear_out_to_heads),
        Weight(f"{A}.o_proj.bias", "blocks.{l}.attn.b_O", optional=True),
        Weight(f"{L}.post_attention_layernorm.weight", "blocks.{l}.ln2.w"),
        Weight(f"{L}.mlp.gate_proj.weight", "blocks.{l}.mlp.W_gate", transpose),
        Weight(f"{L}.mlp.up_proj.weight", "blocks.{l}.mlp.W_in", transpose),
        Weight(f"{L}.mlp.down_proj.weight", "blocks.{l}.mlp.W_out", transpose),
        Weight("model.norm.weight", "ln_final.w"),
        Weight("lm_head.weight", "unembed.W_U", transpose, tied="model.embed_tokens.weight"),
    ),
    ignore=(r"rotary_emb\.inv_freq$",),
)
