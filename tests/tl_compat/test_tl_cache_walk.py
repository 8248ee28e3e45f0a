"""A TransformerLens-style cache walk (ARENA's direct logit attribution and logit lens), written as TL code
is, checked against circuitlab's own attribution functions on the same weights."""

from __future__ import annotations

import pytest
import torch

from circuitlab import HookedTransformer
from circuitlab.analysis import direct_logit_attribution, head_dla, logit_lens, neuron_dla

from ._tiny import tiny_gpt2_folder

PROMPTS = ["The cat sat on the", "The dog sat on the"]
ANSWERS = [(" mat", " log"), (" log", " mat")]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> HookedTransformer:
    return HookedTransformer.from_pretrained(tiny_gpt2_folder(tmp_path_factory.mktemp("tiny")))


def test_cache_walk(model: HookedTransformer) -> None:
    torch.set_grad_enabled(False)
    try:
        _walk(model)
    finally:
        torch.set_grad_enabled(True)


def _walk(model: HookedTransformer) -> None:
    # ---- TL-style program ------------------------------------------------------------------------
    tokens = model.to_tokens(PROMPTS)
    answer_tokens = torch.tensor([[model.to_single_token(a) for a in pair] for pair in ANSWERS])
    logits, cache = model.run_with_cache(tokens)
    answer_residual_directions = model.tokens_to_residual_directions(answer_tokens)  # [batch, 2, d_model]
    logit_diff_directions = answer_residual_directions[:, 0] - answer_residual_directions[:, 1]
    batch = tokens.shape[0]

    def residual_stack_to_logit_diff(residual_stack: torch.Tensor, cache) -> torch.Tensor:
        scaled = cache.apply_ln_to_stack(residual_stack, layer=-1, pos_slice=-1)
        return torch.einsum("...bd,bd->...", scaled, logit_diff_directions) / batch

    final = cache["resid_post", -1][:, -1, :]
    average_logit_diff = residual_stack_to_logit_diff(final, cache)
    per_layer_residual, layer_labels = cache.decompose_resid(layer=-1, pos_slice=-1, return_labels=True)
    per_layer_logit_diffs = residual_stack_to_logit_diff(per_layer_residual, cache)
    per_head_residual, head_labels = cache.stack_head_results(layer=-1, pos_slice=-1, return_labels=True)
    per_head_logit_diffs = residual_stack_to_logit_diff(per_head_residual, cache)
    per_head_logit_diffs = per_head_logit_diffs.reshape(model.cfg.n_layers, model.cfg.n_heads)
    neuron_residual, neuron_labels = cache.stack_neuron_results(-1, pos_slice=-1, return_labels=True)
    per_neuron_logit_diffs = residual_stack_to_logit_diff(neuron_residual, cache)
    full, full_labels = cache.get_full_resid_decomposition(pos_slice=-1, expand_neurons=False, return_labels=True)
    full_attrs = cache.logit_attrs(full, answer_tokens[:, 0], answer_tokens[:, 1], pos_slice=-1)  # [comp, batch]
    lens, lens_labels = cache.accumulated_resid(
        layer=-1, incl_mid=True, pos_slice=-1, apply_ln=True, return_labels=True
    )
    lens_diffs = torch.einsum("cbd,bd->cb", lens, logit_diff_directions)

    # ---- the same numbers from circuitlab's native API ------------------------------------------
    rows = torch.arange(batch)
    b_U = model.b_U
    bias_diff = b_U[answer_tokens[:, 0]] - b_U[answer_tokens[:, 1]]
    logit_diff = logits[rows, -1, answer_tokens[:, 0]] - logits[rows, -1, answer_tokens[:, 1]]
    torch.testing.assert_close(average_logit_diff, (logit_diff - bias_diff).mean(), atol=1e-5, rtol=0)
    assert layer_labels == ["embed", "pos_embed", "0_attn_out", "0_mlp_out", "1_attn_out", "1_mlp_out"]
    assert head_labels[:2] == ["L0H0", "L0H1"] and neuron_labels[:2] == ["L0N0", "L0N1"]
    torch.testing.assert_close(per_layer_logit_diffs.sum(), average_logit_diff, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        per_head_logit_diffs, head_dla(cache, answer_tokens[:, 0], answer_tokens[:, 1]), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        per_neuron_logit_diffs.reshape(model.cfg.n_layers, -1),
        neuron_dla(cache, answer_tokens[:, 0], answer_tokens[:, 1]),
        atol=1e-5,
        rtol=0,
    )
    assert full_labels[-1] == "bias" and "1_mlp_out" in full_labels
    torch.testing.assert_close(full_attrs.sum(0) + bias_diff, logit_diff, atol=1e-5, rtol=0)
    native, native_labels = direct_logit_attribution(cache, answer_tokens[:, 0], answer_tokens[:, 1], by="layer")
    assert native_labels == [*layer_labels, "bias"]
    per_layer_attrs = cache.logit_attrs(per_layer_residual, answer_tokens[:, 0], answer_tokens[:, 1], pos_slice=-1)
    torch.testing.assert_close(per_layer_attrs, native[:-1], atol=1e-5, rtol=0)
    native_lens, native_lens_labels = logit_lens(cache, answer_tokens[:, 0], answer_tokens[:, 1], incl_mid=True)
    assert lens_labels == native_lens_labels
    torch.testing.assert_close(lens_diffs + bias_diff, native_lens, atol=1e-5, rtol=0)


def test_logit_attrs_take_tl_slices(model: HookedTransformer) -> None:
    """TL's own logit_attrs checks: batch / pos slices as ints, Slice objects and lists; stacks without a batch."""
    from circuitlab.utils import Slice

    tokens = model.to_tokens(PROMPTS)
    answer = torch.tensor([[model.to_single_token(a) for a in pair] for pair in ANSWERS])
    _, cache = model.run_with_cache(tokens)
    acc = cache.accumulated_resid(layer=-1, incl_mid=True, pos_slice=-1)  # [component, batch, d_model]
    directions = model.tokens_to_residual_directions(answer)
    ref = (cache.apply_ln_to_stack(acc, layer=-1, pos_slice=-1) * (directions[:, 0] - directions[:, 1])).sum(-1)
    b = -1
    for kwargs in (
        dict(batch_slice=b, pos_slice=Slice(-1), tokens=answer[b, 0], incorrect_tokens=answer[b, 1]),
        dict(batch_slice=Slice(b), pos_slice=-1, tokens=int(answer[b, 0]), incorrect_tokens=int(answer[b, 1])),
    ):
        torch.testing.assert_close(cache.logit_attrs(acc, **kwargs), ref[:, b])
    no_batch = cache.logit_attrs(
        acc[:, b], has_batch_dim=False, batch_slice=b, pos_slice=-1, tokens=answer[b, 0], incorrect_tokens=answer[b, 1]
    )
    torch.testing.assert_close(no_batch, ref[:, b])
    rows = [1, 0]
    picked = cache.logit_attrs(
        acc, batch_slice=rows, pos_slice=-1, tokens=answer[rows, 0], incorrect_tokens=answer[rows, 1]
    )
    torch.testing.assert_close(picked, ref[:, rows])
    with pytest.raises(ValueError):
        cache.logit_attrs(acc, pos_slice=-1, tokens=answer[:, 0], incorrect_tokens=answer[:1, 1])
