"""Direct logit attribution, logit lens and residual decomposition: the pieces add up to the model's logits."""

from __future__ import annotations

import pytest
import torch

from circuitlab.analysis import direct_logit_attribution, head_dla, layer_dla, logit_direction, logit_lens, neuron_dla

from .conftest import small_model

ANSWER, DISTRACTOR = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])
END_POS = torch.tensor([10, 6, 8])

CONFIGS = {
    "ln": dict(),
    "ln_pre": dict(normalization_type="LNPre"),
    "rms": dict(normalization_type="RMS", act_fn="silu"),
    "no_norm": dict(normalization_type=None),
    "attn_only": dict(attn_only=True),
    "rotary_gqa": dict(positional_embedding_type="rotary", n_key_value_heads=2),
}


def actual_logit_diff(model, tokens, pos, answer=ANSWER, distractor=DISTRACTOR):
    logits = model(tokens)
    rows = torch.arange(tokens.shape[0])
    read = logits[rows, pos] if isinstance(pos, torch.Tensor) else logits[:, pos]
    diff = read[rows, answer]
    return (diff - read[rows, distractor] if distractor is not None else diff).detach()


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("pos", [-1, END_POS], ids=["last", "per_row"])
def test_dla_sums_to_logit_diff(config, pos, tokens):
    model = small_model(dtype=torch.float64, **CONFIGS[config])
    _, cache = model.run_with_cache(tokens)
    expected = actual_logit_diff(model, tokens, pos)
    for by in ("head", "layer", "neuron"):
        if by == "neuron" and model.cfg.attn_only:
            continue
        attrs, labels = direct_logit_attribution(cache, ANSWER, DISTRACTOR, pos=pos, by=by)
        assert attrs.shape == (len(labels), tokens.shape[0])
        torch.testing.assert_close(attrs.sum(0), expected, atol=1e-10, rtol=0)
    # Logit lens: the last entry is the model's output, recomputing the norm or not.
    for use_final_scale in (False, True):
        lens, labels = logit_lens(cache, ANSWER, DISTRACTOR, pos=pos, use_final_scale=use_final_scale)
        assert labels[-1] == "final_post" and lens.shape == (model.cfg.n_layers + 1, tokens.shape[0])
        torch.testing.assert_close(lens[-1], expected, atol=1e-10, rtol=0)


def test_single_answer_and_shapes(tokens):
    model = small_model(dtype=torch.float64)
    _, cache = model.run_with_cache(tokens)
    attrs, labels = direct_logit_attribution(cache, 7, by="head")  # logit of token 7, no distractor
    torch.testing.assert_close(attrs.sum(0), model(tokens)[:, -1, 7].detach(), atol=1e-10, rtol=0)
    assert labels[:2] == ["L0H0", "L0H1"] and labels[-2:] == ["remainder", "bias"]
    assert head_dla(cache, ANSWER, DISTRACTOR).shape == (2, 4)
    assert neuron_dla(cache, ANSWER, DISTRACTOR).shape == (2, 128)
    assert logit_direction(model, ANSWER, DISTRACTOR).shape == (3, 32)
    logits, _ = logit_lens(cache, pos=END_POS)  # no answer: full logits at each layer
    assert logits.shape == (3, 3, 40)
    rows = torch.arange(3)
    torch.testing.assert_close(logits[-1], model(tokens)[rows, END_POS].detach())
    with pytest.raises(ValueError, match="by="):
        direct_logit_attribution(cache, ANSWER, by="token")


def test_attributions_match_independent_computations(tokens):
    """Heads against TransformerLens-style `stack_head_results` + `logit_attrs` (LNPre: no weights to fold);
    a neuron against its output vector read through the final norm; the layer decomposition's running
    sums against the linearised logit lens."""
    model = small_model(dtype=torch.float64, normalization_type="LNPre")
    _, cache = model.run_with_cache(tokens)
    per_head = cache.stack_head_results(pos_slice=-1)  # [layer*head, batch, d_model]
    reference = cache.logit_attrs(per_head, ANSWER, DISTRACTOR, pos_slice=-1)  # [layer*head, batch]
    attrs, _ = direct_logit_attribution(cache, ANSWER, DISTRACTOR, by="head")
    torch.testing.assert_close(attrs[: model.cfg.n_layers * model.cfg.n_heads], reference, atol=1e-10, rtol=0)
    torch.testing.assert_close(head_dla(cache, ANSWER, DISTRACTOR).flatten(), reference.mean(-1))

    layer, neuron = 1, 17
    out = cache["post", layer][:, -1, neuron, None] * model.W_out[layer, neuron].detach()  # [batch, d_model]
    out = out - out.mean(-1, keepdim=True)
    direction = logit_direction(model, ANSWER, DISTRACTOR)
    expected = (out * direction).sum(-1) / cache["ln_final.hook_scale"][:, -1, 0]
    torch.testing.assert_close(neuron_dla(cache, ANSWER, DISTRACTOR)[layer, neuron], expected.mean())

    values, labels = layer_dla(cache, ANSWER, DISTRACTOR)
    lens, _ = logit_lens(cache, ANSWER, DISTRACTOR, use_final_scale=True)
    # accumulated stream before layer l = embeddings + everything written by layers < l (+ bias).
    bias = values[-1]
    for l in range(model.cfg.n_layers + 1):
        n_parts = 2 + 2 * l  # embed, pos_embed, then attn_out and mlp_out per layer
        torch.testing.assert_close(values[:n_parts].sum() + bias, lens[l].mean(), atol=1e-10, rtol=0)
    assert labels[:4] == ["embed", "pos_embed", "0_attn_out", "0_mlp_out"]
