"""Hook names and shapes equal TransformerLens's for the same config (classic HookedTransformer 2.x).

The expected lists are written out by hand from TransformerLens's source: `hook_dict` holds every hook
point (some only fire under a flag), the cache holds the ones that fire.
"""

from __future__ import annotations

import pytest
import torch

from circuitlab import HookedTransformer

from .conftest import small_cfg

B, P, D, H, E, V, M = 3, 11, 32, 4, 8, 40, 128  # batch, pos, d_model, heads, d_head, vocab, d_mlp

# Block hook points TransformerLens creates in every block, whatever the config.
ALWAYS_IN_BLOCK = [
    "attn.hook_k", "attn.hook_q", "attn.hook_v", "attn.hook_z", "attn.hook_attn_scores", "attn.hook_pattern",
    "attn.hook_result", "hook_attn_in", "hook_q_input", "hook_k_input", "hook_v_input", "hook_mlp_in",
    "hook_attn_out", "hook_mlp_out", "hook_resid_pre", "hook_resid_post",
]  # fmt: skip

ATTN_FIRING = {
    "hook_resid_pre": (B, P, D),
    "attn.hook_q": (B, P, H, E),
    "attn.hook_k": (B, P, H, E),
    "attn.hook_v": (B, P, H, E),
    "attn.hook_attn_scores": (B, H, P, P),
    "attn.hook_pattern": (B, H, P, P),
    "attn.hook_z": (B, P, H, E),
    "hook_attn_out": (B, P, D),
    "hook_resid_post": (B, P, D),
}
LN1 = {"ln1.hook_scale": (B, P, 1), "ln1.hook_normalized": (B, P, D)}
MLP_FIRING = {
    "hook_resid_mid": (B, P, D),
    "ln2.hook_scale": (B, P, 1),
    "ln2.hook_normalized": (B, P, D),
    "mlp.hook_pre": (B, P, M),
    "mlp.hook_post": (B, P, M),
    "hook_mlp_out": (B, P, D),
}
LN_FINAL = {"ln_final.hook_scale": (B, P, 1), "ln_final.hook_normalized": (B, P, D)}
EMBEDS = {"hook_embed": (B, P, D), "hook_pos_embed": (B, P, D)}


def _model_hooks(top: dict, block: dict, n_layers: int = 1) -> dict[str, tuple]:
    out = dict(top)
    for layer in range(n_layers):
        out.update({f"blocks.{layer}.{name}": shape for name, shape in block.items()})
    return out


# (config overrides, hook points that fire with their shapes, extra silent hook points per block)
CASES = {
    "attn_only_no_ln": (
        dict(attn_only=True, normalization_type=None),
        _model_hooks(EMBEDS, ATTN_FIRING),
    ),
    "ln_mlp_gelu_new": (
        dict(act_fn="gelu_new"),
        _model_hooks(EMBEDS | LN_FINAL, ATTN_FIRING | LN1 | MLP_FIRING),
    ),
    "rotary": (
        dict(positional_embedding_type="rotary"),
        _model_hooks(
            {"hook_embed": (B, P, D)} | LN_FINAL,
            ATTN_FIRING | LN1 | MLP_FIRING | {"attn.hook_rot_q": (B, P, H, E), "attn.hook_rot_k": (B, P, H, E)},
        ),
    ),
    "gqa": (
        dict(n_key_value_heads=2),
        _model_hooks(
            EMBEDS | LN_FINAL,
            ATTN_FIRING | LN1 | MLP_FIRING | {"attn.hook_k": (B, P, 2, E), "attn.hook_v": (B, P, 2, E)},
        ),
    ),
    "solu_ln": (
        dict(act_fn="solu_ln"),
        _model_hooks(
            EMBEDS | LN_FINAL,
            ATTN_FIRING
            | LN1
            | MLP_FIRING
            | {
                "mlp.hook_mid": (B, P, M),
                "mlp.ln.hook_scale": (B, P, 1),
                "mlp.ln.hook_normalized": (B, P, M),
            },
        ),
    ),
    "rms": (
        dict(normalization_type="RMS"),
        _model_hooks(EMBEDS | LN_FINAL, ATTN_FIRING | LN1 | MLP_FIRING),
    ),
    "attn_result_split_qkv_mlp_in_tokens": (
        dict(use_attn_result=True, use_split_qkv_input=True, use_hook_mlp_in=True, use_hook_tokens=True),
        _model_hooks(
            EMBEDS | LN_FINAL | {"hook_tokens": (B, P)},
            ATTN_FIRING
            | MLP_FIRING
            | {
                "attn.hook_result": (B, P, H, D),
                "hook_q_input": (B, P, H, D),
                "hook_k_input": (B, P, H, D),
                "hook_v_input": (B, P, H, D),
                "hook_mlp_in": (B, P, D),
                "ln1.hook_scale": (B, P, H, 1),
                "ln1.hook_normalized": (B, P, H, D),
            },
        ),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_cache_names_and_shapes_match_transformer_lens(case: str, tokens: torch.Tensor) -> None:
    overrides, expected = CASES[case]
    model = HookedTransformer(small_cfg(n_layers=1, **overrides))
    _, cache = model.run_with_cache(tokens)
    assert {k: tuple(v.shape) for k, v in cache.items()} == expected


@pytest.mark.parametrize("case", list(CASES))
def test_hook_dict_matches_transformer_lens(case: str) -> None:
    overrides, firing = CASES[case]
    model = HookedTransformer(small_cfg(n_layers=1, **overrides))
    expected = set(firing) | {f"blocks.0.{name}" for name in ALWAYS_IN_BLOCK}
    assert set(model.hook_dict) == expected
    assert all(hp.name == name for name, hp in model.hook_dict.items())


def test_two_layer_names_are_per_layer(tokens: torch.Tensor) -> None:
    model = HookedTransformer(small_cfg(n_layers=2, attn_only=True, normalization_type=None))
    _, cache = model.run_with_cache(tokens)
    assert set(cache.keys()) == set(_model_hooks(EMBEDS, ATTN_FIRING, n_layers=2))


def test_state_dict_names_follow_transformer_lens() -> None:
    model = HookedTransformer(small_cfg(n_layers=1, n_key_value_heads=2))
    assert set(model.state_dict()) == {
        "embed.W_E", "pos_embed.W_pos", "unembed.W_U", "unembed.b_U", "ln_final.w", "ln_final.b",
        "blocks.0.ln1.w", "blocks.0.ln1.b", "blocks.0.ln2.w", "blocks.0.ln2.b",
        "blocks.0.attn.W_Q", "blocks.0.attn.b_Q", "blocks.0.attn._W_K", "blocks.0.attn._b_K",
        "blocks.0.attn._W_V", "blocks.0.attn._b_V", "blocks.0.attn.W_O", "blocks.0.attn.b_O",
        "blocks.0.mlp.W_in", "blocks.0.mlp.b_in", "blocks.0.mlp.W_out", "blocks.0.mlp.b_out",
    }  # fmt: skip


def test_weight_property_shapes() -> None:
    model = HookedTransformer(small_cfg(n_layers=2, n_key_value_heads=2))
    L = 2
    assert model.W_E.shape == (V, D) and model.W_pos.shape == (24, D) and model.W_U.shape == (D, V)
    assert model.W_E_pos.shape == (V + 24, D)
    for name in ("W_Q", "W_K", "W_V"):
        assert getattr(model, name).shape == (L, H, D, E), name
    for name in ("b_Q", "b_K", "b_V"):
        assert getattr(model, name).shape == (L, H, E), name
    assert model.W_O.shape == (L, H, E, D) and model.b_O.shape == (L, D)
    assert model.W_in.shape == (L, D, M) and model.b_in.shape == (L, M)
    assert model.W_out.shape == (L, M, D) and model.b_out.shape == (L, D)
    assert model.b_U.shape == (V,)
    assert model.QK.shape == (L, H, D, D) and model.OV.shape == (L, H, D, D)
    # Grouped-query: query heads 0,1 share key head 0; heads 2,3 share key head 1.
    assert torch.equal(model.W_K[0, 0], model.W_K[0, 1]) and torch.equal(model.W_K[0, 1], model.blocks[0].attn._W_K[0])
    assert not torch.equal(model.W_K[0, 1], model.W_K[0, 2])


def test_attention_only_model_has_no_mlp_weights() -> None:
    model = HookedTransformer(small_cfg(attn_only=True))
    with pytest.raises(AttributeError, match="attention-only"):
        _ = model.W_in
    with pytest.raises(AttributeError, match="no learned positional embedding"):
        _ = HookedTransformer(small_cfg(positional_embedding_type="rotary")).W_pos
