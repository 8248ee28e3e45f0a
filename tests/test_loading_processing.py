"""Each weight-processing step keeps the log-probabilities and does what it says to the weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from circuitlab import HookedTransformer
from circuitlab.loading.processing import STEPS

from .loading_helpers import save_hf, tokens

OFF = dict.fromkeys(STEPS, False)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for case in ("gpt2", "neox_parallel_partial_rotary", "llama_gqa4_bias"):
        out[case] = tmp_path_factory.mktemp(case)
        save_hf(case, out[case])
    return out


CASES = ["gpt2", "neox_parallel_partial_rotary", "llama_gqa4_bias"]
# Refactoring QK needs a position-free, per-head key circuit: not rotary, not grouped-query (tested to raise).
POSITION_FREE = ["gpt2"]


@pytest.mark.parametrize(
    ("case", "step"),
    [(c, s) for s in STEPS for c in CASES if s != "refactor_factored_attn_matrices" or c in POSITION_FREE],
)
def test_each_step_alone_keeps_log_probs(folders, case: str, step: str) -> None:
    plain = HookedTransformer.from_pretrained(folders[case], **OFF)
    processed = HookedTransformer.from_pretrained(folders[case], **{**OFF, step: True})
    before, after = plain(tokens()), processed(tokens())
    torch.testing.assert_close(after.log_softmax(-1), before.log_softmax(-1), atol=1e-4, rtol=0)
    # logits move by at most one constant per position (center_unembed), nothing else
    shift = after - before
    torch.testing.assert_close(shift, shift.mean(-1, keepdim=True).expand_as(shift), atol=1e-4, rtol=0)
    if step != "center_unembed":
        torch.testing.assert_close(after, before, atol=1e-4, rtol=0)


@pytest.mark.parametrize("case", sorted(set(CASES) - set(POSITION_FREE)))
def test_refactor_factored_attn_matrices_refuses_rotary_and_grouped_query(folders, case: str) -> None:
    with pytest.raises(ValueError, match="refactor_factored_attn_matrices"):
        HookedTransformer.from_pretrained(folders[case], refactor_factored_attn_matrices=True)


def test_refactor_factored_attn_matrices_makes_w_o_orthonormal_and_qk_even(folders) -> None:
    model = HookedTransformer.from_pretrained(folders["gpt2"], refactor_factored_attn_matrices=True)
    plain = HookedTransformer.from_pretrained(folders["gpt2"])
    W_O = model.W_O  # [layer, head, d_head, d_model]
    eye = torch.eye(W_O.shape[-2]).expand_as(W_O @ W_O.transpose(-1, -2))
    torch.testing.assert_close(W_O @ W_O.transpose(-1, -2), eye, atol=1e-5, rtol=0)
    q_eff = torch.cat([model.W_Q, model.b_Q[:, :, None]], dim=-2)  # the bias as an input row of constant 1
    k_eff = torch.cat([model.W_K, model.b_K[:, :, None]], dim=-2)
    torch.testing.assert_close(q_eff.norm(dim=-2), k_eff.norm(dim=-2), atol=1e-4, rtol=1e-4)  # even factors
    torch.testing.assert_close(model.b_V, torch.zeros_like(model.b_V))
    torch.testing.assert_close(model.OV.AB, plain.OV.AB, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(model(tokens()), plain(tokens()), atol=1e-4, rtol=0)


def test_layer_norm_model_weights_after_processing(folders) -> None:
    model = HookedTransformer.from_pretrained(folders["gpt2"])
    assert model.cfg.normalization_type == "LNPre"
    assert not any(name.endswith((".w", ".b")) for name in model.state_dict())  # the norms have no weights left
    zero = dict(atol=1e-5, rtol=0)
    for W in (model.W_E, model.W_pos, model.W_O, model.b_O, model.W_out, model.b_out):
        torch.testing.assert_close(W.mean(-1), torch.zeros_like(W.mean(-1)), **zero)  # writing weights centred
    for W in (model.W_Q, model.W_K, model.W_V):
        torch.testing.assert_close(W.mean(-2), torch.zeros_like(W.mean(-2)), **zero)  # reads of a centred stream
    torch.testing.assert_close(model.W_U.mean(-1), torch.zeros(model.cfg.d_model), **zero)
    assert model.b_U.mean().abs() < 1e-6
    assert (model.b_V == 0).all() and model.b_V.shape == (3, 4, 12)


def test_rms_model_is_scaled_not_centred(folders) -> None:
    plain = HookedTransformer.from_pretrained_no_processing(folders["llama_gqa4_bias"])
    model = HookedTransformer.from_pretrained(folders["llama_gqa4_bias"])
    assert model.cfg.normalization_type == "RMSPre"
    # RMSNorm does not remove the mean, so writing weights must stay as they were (no centring) ...
    torch.testing.assert_close(model.W_E, plain.W_E)
    torch.testing.assert_close(model.W_out, plain.W_out)
    # ... and ln weights fold into every reader: W_gate, W_in and the grouped-query keys (_W_K)
    w2 = plain.blocks[0].ln2.w
    torch.testing.assert_close(model.blocks[0].mlp.W_gate, plain.blocks[0].mlp.W_gate * w2[:, None])
    w1 = plain.blocks[1].ln1.w
    torch.testing.assert_close(model.blocks[1].attn._W_K, plain.blocks[1].attn._W_K * w1[None, :, None])
    assert (model.blocks[0].attn._b_V == 0).all()


def test_fold_value_biases_moves_b_V_into_b_O(folders) -> None:
    plain = HookedTransformer.from_pretrained_no_processing(folders["gpt2"])
    model = HookedTransformer.from_pretrained(folders["gpt2"], **{**OFF, "fold_value_biases": True})
    expected = plain.b_O + torch.einsum("lhe,lhed->ld", plain.b_V, plain.W_O)
    torch.testing.assert_close(model.b_O, expected)
    assert plain.b_V.abs().sum() > 0 and (model.b_V == 0).all()
