"""ActivationCache: values recomputed by hand, shorthand keys, and the residual-stream algebra."""

from __future__ import annotations

import math

import pytest
import torch

from circuitlab import HookNameError, get_act_name

from .conftest import randomize_norm_weights, small_model


def test_values_recomputed_by_hand(tokens: torch.Tensor) -> None:
    """A 1-layer LN + MLP model, every activation rebuilt from the weights with plain tensor maths."""
    model = small_model(n_layers=1, dtype=torch.float64, act_fn="relu")
    randomize_norm_weights(model)
    logits, cache = model.run_with_cache(tokens)
    W = {k: v.detach() for k, v in model.state_dict().items()}
    n_pos = tokens.shape[1]

    def ln(x, w, b):
        x = x - x.mean(-1, keepdim=True)
        scale = (x.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt()
        return x / scale * w + b, scale

    x = W["embed.W_E"][tokens] + W["pos_embed.W_pos"][:n_pos]
    torch.testing.assert_close(cache["resid_pre", 0], x)
    h, scale = ln(x, W["blocks.0.ln1.w"], W["blocks.0.ln1.b"])
    torch.testing.assert_close(cache["scale", 0, "ln1"], scale)
    torch.testing.assert_close(cache["normalized", 0, "ln1"], h)
    for head in range(4):
        q = h @ W["blocks.0.attn.W_Q"][head] + W["blocks.0.attn.b_Q"][head]  # [batch, pos, d_head]
        k = h @ W["blocks.0.attn.W_K"][head] + W["blocks.0.attn.b_K"][head]
        v = h @ W["blocks.0.attn.W_V"][head] + W["blocks.0.attn.b_V"][head]
        torch.testing.assert_close(cache["q", 0][:, :, head], q)
        scores = q @ k.transpose(1, 2) / math.sqrt(8)
        for i in range(n_pos):
            for j in range(n_pos):
                if j > i:
                    scores[:, i, j] = float("-inf")
        torch.testing.assert_close(cache["attn_scores", 0][:, head], scores)
        pattern = scores.softmax(-1)
        torch.testing.assert_close(cache["pattern", 0][:, head], pattern)
        torch.testing.assert_close(cache["z", 0][:, :, head], pattern @ v)
    attn_out = torch.einsum("bphe,hed->bpd", cache["z", 0], W["blocks.0.attn.W_O"]) + W["blocks.0.attn.b_O"]
    torch.testing.assert_close(cache["attn_out", 0], attn_out)
    mid = x + attn_out
    h2, _ = ln(mid, W["blocks.0.ln2.w"], W["blocks.0.ln2.b"])
    pre = h2 @ W["blocks.0.mlp.W_in"] + W["blocks.0.mlp.b_in"]
    torch.testing.assert_close(cache["pre", 0], pre)
    torch.testing.assert_close(cache["post", 0], pre.clamp(min=0))
    post = mid + pre.clamp(min=0) @ W["blocks.0.mlp.W_out"] + W["blocks.0.mlp.b_out"]
    torch.testing.assert_close(cache["resid_post", 0], post)
    final, _ = ln(post, W["ln_final.w"], W["ln_final.b"])
    torch.testing.assert_close(logits, final @ W["unembed.W_U"] + W["unembed.b_U"])


def test_shorthand_keys(tokens: torch.Tensor) -> None:
    model = small_model()
    _, cache = model.run_with_cache(tokens)
    assert cache["pattern", 0] is cache["blocks.0.attn.hook_pattern"]
    assert cache["resid_pre", -1] is cache["blocks.1.hook_resid_pre"]
    assert cache["scale"] is cache["ln_final.hook_scale"]
    assert cache["k1"] is cache["blocks.1.attn.hook_k"]
    assert cache["embed"] is cache["hook_embed"]
    assert ("mlp_out", 1) in cache and ("result", 0) not in cache
    assert get_act_name("attn", 3) == "blocks.3.attn.hook_pattern"
    assert get_act_name("normalized", 2, "ln2") == "blocks.2.ln2.hook_normalized"
    assert get_act_name("pre", 5) == "blocks.5.mlp.hook_pre"
    assert get_act_name("q", 0, "a") == "blocks.0.attn.hook_q"
    with pytest.raises(HookNameError, match=r"blocks\.0\.attn\.hook_pattern"):
        cache["blocks.0.attn.hook_patern"]


def test_accumulated_and_decomposed_residual(tokens: torch.Tensor) -> None:
    model = small_model(n_layers=2)
    _, cache = model.run_with_cache(tokens)
    acc, labels = cache.accumulated_resid(incl_mid=True, return_labels=True)
    assert labels == ["0_pre", "0_mid", "1_pre", "1_mid", "final_post"]
    torch.testing.assert_close(acc[-1], cache["resid_post", 1])
    acc_pos = cache.accumulated_resid(layer=1, pos_slice=-1)
    assert acc_pos.shape == (2, 3, 32)
    torch.testing.assert_close(acc_pos[1], cache["resid_pre", 1][:, -1])

    parts, labels = cache.decompose_resid(return_labels=True)
    assert labels == ["embed", "pos_embed", "0_attn_out", "0_mlp_out", "1_attn_out", "1_mlp_out"]
    torch.testing.assert_close(parts.sum(0), cache["resid_post", 1], atol=1e-5, rtol=1e-5)
    mid = cache.decompose_resid(layer=1, mlp_input=True)
    torch.testing.assert_close(mid.sum(0), cache["resid_mid", 1], atol=1e-5, rtol=1e-5)
    attn_parts, labels = cache.decompose_resid(mode="attn", incl_embeds=False, return_labels=True)
    assert labels == ["0_attn_out", "1_attn_out"]
    torch.testing.assert_close(attn_parts[1], cache["attn_out", 1])


def test_head_results_sum_to_the_attention_output(tokens: torch.Tensor) -> None:
    model = small_model(n_layers=2)
    _, cache = model.run_with_cache(tokens)
    heads, labels = cache.stack_head_results(return_labels=True, incl_remainder=True)
    assert labels[:5] == ["L0H0", "L0H1", "L0H2", "L0H3", "L1H0"] and labels[-1] == "remainder"
    assert heads.shape == (9, 3, 11, 32)
    torch.testing.assert_close(heads.sum(0), cache["resid_post", 1], atol=1e-5, rtol=1e-5)
    layer0 = heads[:4].sum(0) + model.b_O[0]
    torch.testing.assert_close(layer0, cache["attn_out", 0], atol=1e-5, rtol=1e-5)
    # Same numbers when the model computed hook_result itself.
    model.cfg.use_attn_result = True
    _, cache2 = model.run_with_cache(tokens)
    torch.testing.assert_close(cache2.stack_head_results(), heads[:-1], atol=1e-5, rtol=1e-5)
    model.cfg.use_attn_result = False
    assert cache.stack_head_results(layer=0).shape == (0, 3, 11, 32)


def test_apply_ln_and_logit_attrs_match_the_logits(tokens: torch.Tensor) -> None:
    """With weightless final LN (as after folding), direct logit attributions sum to the logit difference."""
    model = small_model(normalization_type="LNPre", dtype=torch.float64)
    with torch.no_grad():
        model.unembed.b_U.zero_()
    logits, cache = model.run_with_cache(tokens)
    parts = cache.decompose_resid()
    torch.testing.assert_close(cache.apply_ln_to_stack(parts).sum(0), cache["ln_final.hook_normalized"])
    answer, wrong = tokens[:, -1], (tokens[:, -1] + 1) % 40
    attrs = cache.logit_attrs(parts[:, :, -1], answer, wrong, pos_slice=-1)  # [component, batch]
    diff = logits[torch.arange(3), -1, answer] - logits[torch.arange(3), -1, wrong]
    torch.testing.assert_close(attrs.sum(0), diff)
    # Per-head attributions plus the remainder add up the same way.
    heads = cache.stack_head_results(incl_remainder=True, pos_slice=-1)
    torch.testing.assert_close(cache.logit_attrs(heads, answer, wrong, pos_slice=-1).sum(0), diff)
    with pytest.raises(ValueError, match="match tokens in shape"):
        cache.logit_attrs(parts[:, :, -1], answer, wrong[:2], pos_slice=-1)


def test_logit_lens_final_layer_equals_model_output(tokens: torch.Tensor) -> None:
    model = small_model(normalization_type="LNPre", dtype=torch.float64)
    logits, cache = model.run_with_cache(tokens)
    acc = cache.accumulated_resid(apply_ln=True)
    torch.testing.assert_close(acc[-1] @ model.W_U + model.b_U, logits)


def test_housekeeping(tokens: torch.Tensor) -> None:
    model = small_model()
    _, cache = model.run_with_cache(tokens[:1])
    n_bytes = sum(t.numel() * 4 for t in cache.values())
    assert cache.memory_bytes() == n_bytes and "activations" in cache.memory_summary()
    assert cache.to("cpu") is cache
    cache.remove_batch_dim()
    assert cache["resid_pre", 0].shape == (11, 32) and not cache.has_batch_dim
    _, big = model.run_with_cache(tokens)
    with pytest.raises(ValueError, match="batch size 1"):
        big.remove_batch_dim()
    with pytest.raises(AssertionError):  # TransformerLens code expects its AssertionError
        big.remove_batch_dim()
    stacked = big.stack_activation("pattern")
    assert stacked.shape == (2, 3, 4, 11, 11)


def test_neuron_results_and_full_decomposition_sum_to_the_stream(tokens: torch.Tensor) -> None:
    model = small_model(n_layers=2, dtype=torch.float64)
    _, cache = model.run_with_cache(tokens)
    neurons = cache.get_neuron_results(1)  # [batch, pos, neuron, d_model]
    assert neurons.shape == (3, 11, 128, 32)
    torch.testing.assert_close(neurons.sum(-2) + model.b_out[1], cache["mlp_out", 1])
    some = cache.get_neuron_results(0, neuron_slice=[3, 5], pos_slice=-1)  # [batch, 2, d_model]
    torch.testing.assert_close(some, cache["post", 0][:, -1, [3, 5], None] * model.W_out[0, [3, 5]])
    stack, labels = cache.stack_neuron_results(2, neuron_slice=(0, 4), return_labels=True, incl_remainder=True)
    assert labels[:5] == ["L0N0", "L0N1", "L0N2", "L0N3", "L1N0"] and labels[-1] == "remainder"
    assert stack.shape == (9, 3, 11, 32)
    torch.testing.assert_close(stack.sum(0), cache["resid_post", 1])
    assert cache.stack_neuron_results(1, neuron_slice=7, return_labels=True)[1] == ["L0N7"]
    for stack in (cache.stack_neuron_results(0, incl_remainder=True), cache.stack_head_results(0, incl_remainder=True)):
        torch.testing.assert_close(stack[0], cache["resid_pre", 0])  # TL 2.18 wraps to the last layer here

    full, labels = cache.get_full_resid_decomposition(return_labels=True)
    assert labels[:2] == ["L0H0", "L0H1"] and labels[-3:] == ["embed", "pos_embed", "bias"]
    assert len(labels) == full.shape[0] == 2 * 4 + 2 * 128 + 3
    torch.testing.assert_close(full.sum(0), cache["resid_post", 1])
    mid = cache.get_full_resid_decomposition(layer=1, mlp_input=True, pos_slice=[0, 4])
    torch.testing.assert_close(mid.sum(0), cache["resid_mid", 1][:, [0, 4]])
    whole, labels = cache.get_full_resid_decomposition(expand_neurons=False, return_labels=True)
    assert "0_mlp_out" in labels and "L0N0" not in labels
    torch.testing.assert_close(whole.sum(0), cache["resid_post", 1])
    attn_only = small_model(n_layers=2, attn_only=True)
    _, cache = attn_only.run_with_cache(tokens)
    torch.testing.assert_close(cache.get_full_resid_decomposition(1).sum(0), cache["resid_pre", 1], atol=1e-5, rtol=0)


def test_accumulated_bias() -> None:
    model = small_model(n_layers=3)
    b_O, b_out = model.b_O.detach(), model.b_out.detach()
    torch.testing.assert_close(model.accumulated_bias(0), torch.zeros(32))
    torch.testing.assert_close(model.accumulated_bias(2), b_O[:2].sum(0) + b_out[:2].sum(0))
    torch.testing.assert_close(model.accumulated_bias(1, mlp_input=True), b_O[:2].sum(0) + b_out[0])
    torch.testing.assert_close(model.accumulated_bias(3, include_mlp_biases=False), b_O.sum(0))
    with pytest.raises(AssertionError, match="beyond the final layer"):
        model.accumulated_bias(3, mlp_input=True)


def test_pos_slice_forms_and_batch_slicing(tokens: torch.Tensor) -> None:
    from circuitlab.utils import Slice

    model = small_model(n_layers=2)
    _, cache = model.run_with_cache(tokens)
    resid = cache["resid_pre", 1]
    for pos_slice, expected in [
        (-1, resid[:, -1]),
        ([0, 3], resid[:, [0, 3]]),
        (slice(2, 6), resid[:, 2:6]),
        ((2, 6), resid[:, 2:6]),
        (Slice((1, 9, 2)), resid[:, 1:9:2]),
        (torch.tensor([5]), resid[:, [5]]),
    ]:
        torch.testing.assert_close(cache.accumulated_resid(layer=1, pos_slice=pos_slice)[1], expected)
        heads = cache.stack_head_results(incl_remainder=True, pos_slice=pos_slice)
        torch.testing.assert_close(heads.sum(0), Slice(pos_slice).apply(cache["resid_post", 1], -2), atol=1e-5, rtol=0)
    one = cache.apply_slice_to_batch_dim(1)
    assert not one.has_batch_dim and one["resid_pre", 0].shape == (11, 32)
    torch.testing.assert_close(one.stack_head_results(incl_remainder=True).sum(0), cache["resid_post", 1][1])
    two = cache.apply_slice_to_batch_dim([0, 2])
    assert two.has_batch_dim and torch.equal(two["pattern", 0], cache["pattern", 0][[0, 2]])
    with pytest.raises(AssertionError, match="without a batch dimension"):
        one.apply_slice_to_batch_dim(0)


def test_apply_ln_recompute_is_the_logit_lens(tokens: torch.Tensor) -> None:
    """TL 2.18: accumulated_resid(apply_ln=True) runs the final norm on each partial stream itself."""
    model = small_model(n_layers=2)  # LN with random weights
    _, cache = model.run_with_cache(tokens)
    acc = cache.accumulated_resid(apply_ln=True)
    torch.testing.assert_close(acc[1], model.ln_final(cache["resid_pre", 1]))
    parts = cache.decompose_resid()
    cached = cache.apply_ln_to_stack(parts)  # linear: the run's own scale, no weight
    centred = parts - parts.mean(-1, keepdim=True)
    torch.testing.assert_close(cached, centred / cache["ln_final.hook_scale"])
    torch.testing.assert_close(cache.apply_ln_to_stack(parts, recompute_ln=True), model.ln_final(parts))
    earlier = cache.accumulated_resid(layer=1, apply_ln=True)  # before layer 1: ln1's cached scale
    torch.testing.assert_close(
        earlier[0], (lambda x: (x - x.mean(-1, keepdim=True)) / cache["scale", 1, "ln1"])(cache["resid_pre", 0])
    )


def test_toggle_autodiff_and_move_model(tokens: torch.Tensor) -> None:
    model = small_model()
    _, cache = model.run_with_cache(tokens)
    try:
        cache.toggle_autodiff(False)
        assert not torch.is_grad_enabled()
        cache.toggle_autodiff(True)
        assert torch.is_grad_enabled()
    finally:
        torch.set_grad_enabled(True)
    assert cache.to("cpu", move_model=True) is cache


@pytest.mark.parametrize("name", ["gated_mlp_rms_silu", "parallel_attn_mlp", "rotary", "gqa", "solu_ln", "llama_like"])
def test_full_decomposition_sums_for_every_block_kind(name: str, tokens: torch.Tensor) -> None:
    from .conftest import CONFIGS

    model = small_model(dtype=torch.float64, **CONFIGS[name])
    _, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(cache.get_full_resid_decomposition().sum(0), cache["resid_post", 1])
    if not model.cfg.parallel_attn_mlp:  # parallel blocks have no resid_mid
        mid = cache.get_full_resid_decomposition(1, mlp_input=True, expand_neurons=False)
        torch.testing.assert_close(mid.sum(0), cache["resid_mid", 1])
