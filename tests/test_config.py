"""Config validation: every bad value names the field and what is allowed."""

from __future__ import annotations

import math

import pytest
import torch

from circuitlab import HookedTransformerConfig

from .conftest import small_cfg


@pytest.mark.parametrize(
    ("overrides", "field", "hint"),
    [
        (dict(n_layers=0), "n_layers", "positive integer"),
        (dict(d_model=32.0), "d_model", "positive integer"),
        (dict(act_fn="gelu2"), "act_fn", "relu"),
        (dict(normalization_type="layernorm"), "normalization_type", "LNPre"),
        (dict(positional_embedding_type="learned"), "positional_embedding_type", "rotary"),
        (dict(n_key_value_heads=3), "n_key_value_heads", "divide n_heads=4"),
        (dict(positional_embedding_type="rotary", rotary_dim=5), "rotary_dim", "even number"),
        (dict(attn_scale=-1.0), "attn_scale", "positive number"),
        (dict(use_attn_scale=False, attn_scale=2.0), "attn_scale", "set only one"),
        (dict(dtype="float8"), "dtype", "float32"),
        (dict(device="gpu0"), "device", "torch device"),
        (dict(causal="yes"), "causal", "True or False"),
        (dict(n_heads=None, d_head=None), "n_heads", "give n_heads or d_head"),
        (dict(n_heads=5, d_head=None), "n_heads", "not divisible"),
        (dict(use_attn_in=True, use_split_qkv_input=True), "use_attn_in", "exclusive"),
    ],
)
def test_bad_values_name_the_field(overrides: dict, field: str, hint: str) -> None:
    with pytest.raises(ValueError, match=f"HookedTransformerConfig.{field}=") as err:
        small_cfg(**overrides)
    assert hint in str(err.value)


def test_derived_defaults() -> None:
    cfg = HookedTransformerConfig(n_layers=1, d_model=64, n_ctx=8, d_vocab=10, n_heads=4)
    assert (cfg.d_head, cfg.d_mlp, cfg.d_vocab_out) == (16, 256, 10)
    assert cfg.attn_scale == 4.0 and math.isclose(cfg.init_range, 0.1)
    assert cfg.attention_dir == "causal" and cfg.n_kv_heads == 4
    assert HookedTransformerConfig(n_layers=1, d_model=64, n_ctx=8, d_vocab=10, d_head=32).n_heads == 2
    rot = HookedTransformerConfig(
        n_layers=1, d_model=64, n_ctx=8, d_vocab=10, n_heads=4, positional_embedding_type="rotary"
    )
    assert rot.rotary_dim == 16
    assert HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_vocab=10, n_heads=2, attn_only=True).d_mlp is None


def test_dict_round_trip_and_unknown_keys() -> None:
    cfg = small_cfg(dtype=torch.float64, positional_embedding_type="rotary", n_key_value_heads=2)
    data = cfg.to_dict()
    assert data["dtype"] == "float64"
    assert HookedTransformerConfig.from_dict(data) == cfg
    with pytest.raises(ValueError, match="n_layer") as err:
        HookedTransformerConfig.from_dict({**data, "n_layer": 3})
    assert "n_layers" in str(err.value)
