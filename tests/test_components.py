"""`circuitlab.components`: TransformerLens's component classes, built from a config or a dict."""

from __future__ import annotations

import pytest
import torch

from circuitlab import components
from circuitlab.model.config import HookedTransformerConfig

from .conftest import small_cfg, small_model

CFG = dict(n_layers=2, d_model=32, n_heads=4, d_head=8, n_ctx=24, d_vocab=40, seed=0)


@pytest.mark.parametrize("as_dict", [True, False])
def test_each_component_builds_from_a_config_or_a_dict(as_dict: bool) -> None:
    cfg = dict(CFG) if as_dict else HookedTransformerConfig(**CFG)
    x = torch.randn(2, 5, 32)
    tokens = torch.randint(0, 40, (2, 5))
    assert components.Attention(cfg)(x, x, x).shape == (2, 5, 32)
    assert components.MLP(cfg)(x).shape == (2, 5, 32)
    assert hasattr(components.GatedMLP(cfg), "W_gate") and not hasattr(components.MLP(cfg), "W_gate")
    for norm in (components.LayerNorm, components.LayerNormPre, components.RMSNorm, components.RMSNormPre):
        assert norm(cfg)(x).shape == x.shape
    assert components.Embed(cfg)(tokens).shape == (2, 5, 32)
    assert components.PosEmbed(cfg)(tokens).shape == (2, 5, 32)
    assert components.Unembed(cfg)(x).shape == (2, 5, 40)
    assert components.TransformerBlock(cfg, 1)(x).shape == x.shape


def test_grouped_query_attention_and_attn_type() -> None:
    with pytest.raises(ValueError, match="n_key_value_heads"):
        components.GroupedQueryAttention(CFG)
    gqa = components.GroupedQueryAttention({**CFG, "n_key_value_heads": 2})
    assert gqa._W_K.shape == (2, 32, 8)
    local = components.Attention({**CFG, "window_size": 2}, attn_type="local", layer_id=0)
    assert local.window == 2 and local.attn_type == "local"
    with pytest.raises(ValueError, match="attn_type"):
        components.Attention(CFG, attn_type="sliding")


def test_a_block_with_the_models_weights_computes_the_models_layer(tokens: torch.Tensor) -> None:
    model = small_model()
    block = components.TransformerBlock(small_cfg(), 0)
    block.load_state_dict(model.blocks[0].state_dict())
    _, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(block(cache["resid_pre", 0]), cache["resid_post", 0])


def test_a_subclass_overrides_forward(tokens: torch.Tensor) -> None:
    class ZeroMLP(components.MLP):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(x)

    model = small_model()
    model.blocks[0].mlp = ZeroMLP(model.cfg)
    model.setup()
    _, cache = model.run_with_cache(tokens)
    assert torch.all(cache["mlp_out", 0] == 0)
