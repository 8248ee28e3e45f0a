"""Every config switch changes what it should, and the fast attention path equals the explicit one."""

from __future__ import annotations

import math

import pytest
import torch

from circuitlab import HookedTransformer

from .conftest import CONFIGS, small_cfg, small_model


def test_no_causal_mask_lets_position_0_see_position_5(tokens: torch.Tensor) -> None:
    causal, bidirectional = small_model(), small_model(causal=False)
    _, c_cache = causal.run_with_cache(tokens)
    _, b_cache = bidirectional.run_with_cache(tokens)
    assert (c_cache["pattern", 0][:, :, 0, 5] == 0).all()
    assert (b_cache["pattern", 0][:, :, 0, 5] > 0).all()
    assert torch.isinf(c_cache["attn_scores", 0][:, :, 0, 5]).all()  # masked before the hook, as in TransformerLens

    # Changing a future token changes position 0's output only without the mask.
    edited = tokens.clone()
    edited[:, 5] = (edited[:, 5] + 1) % 40
    torch.testing.assert_close(causal(edited)[:, :5], causal(tokens)[:, :5])
    assert not torch.allclose(bidirectional(edited)[:, 0], bidirectional(tokens)[:, 0])


def test_attn_scale_one_multiplies_scores_by_sqrt_d_head(tokens: torch.Tensor) -> None:
    scaled, unscaled = small_model(), small_model(attn_scale=1.0)
    assert scaled.cfg.attn_scale == math.sqrt(8) and small_cfg(use_attn_scale=False).attn_scale == 1.0
    # Same weights, so layer 0 queries and keys agree; only the division differs.
    _, s_cache = scaled.run_with_cache(tokens)
    _, u_cache = unscaled.run_with_cache(tokens)
    mask = torch.ones(11, 11, dtype=torch.bool).tril()
    torch.testing.assert_close(
        u_cache["attn_scores", 0][..., mask], s_cache["attn_scores", 0][..., mask] * math.sqrt(8)
    )


def test_no_positional_embedding_is_permutation_equivariant_without_mask(tokens: torch.Tensor) -> None:
    model = small_model(positional_embedding_type="none", causal=False)
    perm = torch.randperm(tokens.shape[1], generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(model(tokens[:, perm]), model(tokens)[:, perm], atol=1e-5, rtol=1e-5)
    # With positions (or with the mask) the same permutation changes the output.
    for other in (small_model(causal=False), small_model(positional_embedding_type="none")):
        assert not torch.allclose(other(tokens[:, perm]), other(tokens)[:, perm], atol=1e-4)
    assert "hook_pos_embed" not in model.hook_dict


def test_rotary_scores_depend_only_on_relative_position() -> None:
    model = small_model(positional_embedding_type="rotary", n_layers=1, normalization_type=None, attn_only=True)
    # The same two tokens at distance 3, placed at different absolute positions, get the same score.
    a, b, filler = 7, 9, 0
    scores = []
    for start in (0, 4, 9):
        seq = torch.full((1, 14), filler)
        seq[0, start], seq[0, start + 3] = a, b
        _, cache = model.run_with_cache(seq, names_filter="blocks.0.attn.hook_attn_scores")
        scores.append(cache["attn_scores", 0][0, :, start + 3, start])
    torch.testing.assert_close(scores[0], scores[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores[0], scores[2], atol=1e-5, rtol=1e-5)


def test_partial_rotary_leaves_the_other_dims_alone(tokens: torch.Tensor) -> None:
    model = small_model(positional_embedding_type="rotary", rotary_dim=4)
    _, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(cache["rot_q", 0][..., 4:], cache["q", 0][..., 4:])
    assert not torch.allclose(cache["rot_q", 0][:, 1:, :, :4], cache["q", 0][:, 1:, :, :4])
    torch.testing.assert_close(cache["rot_q", 0][:, 0], cache["q", 0][:, 0])  # position 0: angle 0


def test_attention_only_has_no_mlp_and_none_norm_has_no_ln(tokens: torch.Tensor) -> None:
    model = small_model(attn_only=True, normalization_type=None)
    assert not hasattr(model.blocks[0], "mlp") and not any("ln" in n for n in model.hook_dict)
    _, cache = model.run_with_cache(tokens)
    resid = cache["hook_embed"] + cache["hook_pos_embed"] + cache["attn_out", 0] + cache["attn_out", 1]
    torch.testing.assert_close(cache["resid_post", 1], resid)
    torch.testing.assert_close(model(tokens), resid @ model.W_U + model.b_U)


def test_grouped_query_attention_equals_repeated_keys(tokens: torch.Tensor) -> None:
    gqa = small_model(n_key_value_heads=2)
    full = HookedTransformer(small_cfg())
    sd = {k: v for k, v in gqa.state_dict().items() if "._" not in k}
    for layer in range(2):
        for name in ("W_K", "b_K", "W_V", "b_V"):
            sd[f"blocks.{layer}.attn.{name}"] = getattr(gqa, name)[layer]
    full.load_state_dict(sd)
    torch.testing.assert_close(gqa(tokens), full(tokens), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fast_path_equals_explicit_path(name: str, tokens: torch.Tensor) -> None:
    fast = small_model(**CONFIGS[name])
    explicit = HookedTransformer(small_cfg(fast_attention=False, **CONFIGS[name]))
    explicit.load_state_dict(fast.state_dict())
    torch.testing.assert_close(fast(tokens), explicit(tokens), atol=1e-5, rtol=1e-5)
    # Caching the pattern switches the same model to the explicit path: same logits too.
    logits, cache = fast.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    torch.testing.assert_close(logits, fast(tokens), atol=1e-5, rtol=1e-5)
    assert len(cache) == 2


def test_fast_path_is_taken_only_without_pattern_hooks() -> None:
    model = small_model()
    attn = model.blocks[0].attn
    assert not attn.needs_pattern()
    with model.hooks(fwd_hooks=[("blocks.0.attn.hook_z", lambda t, hook: None)]):
        assert not attn.needs_pattern()
    with model.hooks(fwd_hooks=[("blocks.0.attn.hook_attn_scores", lambda t, hook: None)]):
        assert attn.needs_pattern()
    with model.hooks(bwd_hooks=[("blocks.0.attn.hook_pattern", lambda g, hook: None)]):
        assert attn.needs_pattern()
    assert not attn.needs_pattern()


def test_local_attention_sees_only_the_last_window_size_keys(tokens: torch.Tensor) -> None:
    model = small_model(attn_types=["local", "global"], window_size=3)
    _, cache = model.run_with_cache(tokens)
    distance = torch.arange(11)[:, None] - torch.arange(11)[None, :]
    local, full = cache["pattern", 0], cache["pattern", 1]
    assert (local[..., (distance >= 3) | (distance < 0)] == 0).all()
    assert (local[..., (distance >= 0) & (distance < 3)] > 0).all()
    assert (full[..., distance >= 0] > 0).all()
    with pytest.raises(ValueError, match="window_size"):
        small_cfg(attn_types=["local", "global"])
    with pytest.raises(ValueError, match="attn_types"):
        small_cfg(attn_types=["local"], window_size=2)


def test_parallel_attn_mlp_reads_resid_pre_and_has_no_resid_mid(tokens: torch.Tensor) -> None:
    model = small_model(parallel_attn_mlp=True)
    assert not any(name.endswith("hook_resid_mid") for name in model.hook_dict)
    _, cache = model.run_with_cache(tokens)
    for layer in range(2):
        block = model.blocks[layer]
        torch.testing.assert_close(cache["mlp_out", layer], block.mlp(block.ln2(cache["resid_pre", layer])))
        total = cache["resid_pre", layer] + cache["attn_out", layer] + cache["mlp_out", layer]
        torch.testing.assert_close(cache["resid_post", layer], total)


def test_gated_mlp_multiplies_the_activated_gate_by_the_linear_branch(tokens: torch.Tensor) -> None:
    model = small_model(gated_mlp=True, act_fn="silu", normalization_type="RMS")
    assert model.cfg.n_params == 2 * (4 * 32 * 8 * 4 + 3 * 32 * 128)
    _, cache = model.run_with_cache(tokens)
    mlp = model.blocks[0].mlp
    x = cache["blocks.0.ln2.hook_normalized"] * model.blocks[0].ln2.w
    torch.testing.assert_close(cache["blocks.0.mlp.hook_pre"], x @ mlp.W_gate)
    torch.testing.assert_close(cache["blocks.0.mlp.hook_pre_linear"], x @ mlp.W_in)
    expected = torch.nn.functional.silu(x @ mlp.W_gate) * (x @ mlp.W_in) + mlp.b_in
    torch.testing.assert_close(cache["blocks.0.mlp.hook_post"], expected)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_run_with_cache_gives_the_forwards_logits_bit_for_bit(name: str, tokens: torch.Tensor) -> None:
    """Reading hooks never change numbers: the cached run takes the attention output from the same kernel."""
    model = small_model(**CONFIGS[name])
    assert torch.equal(model.run_with_cache(tokens)[0], model(tokens))
    reader = [(lambda n: n.endswith("hook_pattern"), lambda pattern, hook: None)]
    assert torch.equal(model.run_with_hooks(tokens, fwd_hooks=reader), model(tokens))


def test_an_edit_of_the_pattern_in_place_or_returned_changes_the_output(tokens: torch.Tensor) -> None:
    model = small_model()
    plain = model(tokens)

    def in_place(pattern: torch.Tensor, hook) -> None:
        pattern[:, 0] = 0.0  # no return: TransformerLens code often edits in place

    def returned(pattern: torch.Tensor, hook) -> torch.Tensor:
        return torch.zeros_like(pattern)

    for fn in (in_place, returned):
        edited = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_pattern", fn)])
        assert not torch.allclose(edited, plain, atol=1e-4)
    scores_edit = model.run_with_hooks(
        tokens, fwd_hooks=[("blocks.1.attn.hook_attn_scores", lambda s, hook: s.mul_(0.0))]
    )
    assert not torch.allclose(scores_edit, plain, atol=1e-4)


def test_backward_hooks_on_the_pattern_fire(tokens: torch.Tensor) -> None:
    model = small_model()
    grads = {}
    with model.hooks(bwd_hooks=[("blocks.0.attn.hook_pattern", lambda g, hook: grads.setdefault("g", g))]):
        model(tokens, return_type="loss").backward()
    assert grads["g"].shape == (3, 4, 11, 11) and grads["g"].abs().sum() > 0
