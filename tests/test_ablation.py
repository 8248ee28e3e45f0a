"""Zero, mean and resample ablation of heads, neurons and sublayers, checked against hand computations."""

from __future__ import annotations

import pytest
import torch

from circuitlab.analysis import ablation_hooks, head_ablation_effects, run_with_ablation

from .conftest import small_model


def _n_hooks(model) -> int:
    return sum(len(hp.fwd_hooks) for hp in model.hook_dict.values())


def test_zero_ablating_a_head_removes_its_output(tokens: torch.Tensor) -> None:
    model = small_model(dtype=torch.float64)
    _, clean = model.run_with_cache(tokens)
    hooks = ablation_hooks(model, heads=[(1, 2)], method="zero")
    with model.hooks(fwd_hooks=hooks):
        _, ablated = model.run_with_cache(tokens)
    expected = clean["attn_out", 1] - clean["z", 1][:, :, 2] @ model.W_O[1, 2].detach()
    torch.testing.assert_close(ablated["attn_out", 1], expected)
    torch.testing.assert_close(ablated["resid_pre", 1], clean["resid_pre", 1])  # earlier layers untouched
    assert _n_hooks(model) == 0


def test_mean_and_resample_use_the_reference(tokens: torch.Tensor) -> None:
    model = small_model(dtype=torch.float64)
    reference = torch.randint(0, 40, (5, 11), generator=torch.Generator().manual_seed(9))
    _, ref_cache = model.run_with_cache(reference)
    seen = {}

    def spy(z, hook):
        seen["z"] = z

    spy_hook = ("blocks.0.attn.hook_z", spy)
    with model.hooks(fwd_hooks=[*ablation_hooks(model, heads=[(0, 1)], reference=reference), spy_hook]):
        model(tokens)
    torch.testing.assert_close(seen["z"][:, :, 1], ref_cache["z", 0][:, :, 1].mean((0, 1)).expand(3, 11, -1))
    with model.hooks(fwd_hooks=[*ablation_hooks(model, heads=[(0, 1)], reference=reference, per_position=True),
                                spy_hook]):  # fmt: skip
        model(tokens)
    torch.testing.assert_close(seen["z"][0, :, 1], ref_cache["z", 0][:, :, 1].mean(0))
    with model.hooks(fwd_hooks=[*ablation_hooks(model, heads=[(0, 1)], method="resample", reference=reference),
                                spy_hook]):  # fmt: skip
        model(tokens)
    rows = [int((ref_cache["z", 0][:, :, 1] - seen["z"][b, :, 1]).abs().sum((1, 2)).argmin()) for b in range(3)]
    for b, r in enumerate(rows):
        torch.testing.assert_close(seen["z"][b, :, 1], ref_cache["z", 0][r, :, 1])
    torch.testing.assert_close(seen["z"][:, :, 0], model.run_with_cache(tokens)[1]["z", 0][:, :, 0])  # other heads


def test_neurons_and_sublayers(tokens: torch.Tensor) -> None:
    model = small_model(dtype=torch.float64)
    _, clean = model.run_with_cache(tokens)
    with model.hooks(fwd_hooks=ablation_hooks(model, neurons=[(0, 5), (0, 7)], method="zero")):
        _, cache = model.run_with_cache(tokens)
    post = clean["post", 0].clone()
    post[..., [5, 7]] = 0
    torch.testing.assert_close(cache["mlp_out", 0], post @ model.W_out[0].detach() + model.b_out[0].detach())
    logits = run_with_ablation(model, tokens, layers=[(1, "mlp")], method="zero")
    expected = model.unembed(model.ln_final(clean["resid_mid", 1]))
    torch.testing.assert_close(logits, expected)


def test_head_ablation_effects_match_one_run_per_head(tokens: torch.Tensor) -> None:
    model = small_model(dtype=torch.float64)

    def loss_fn(logits):
        return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())

    effects = head_ablation_effects(model, tokens, loss_fn)
    clean = loss_fn(model(tokens))
    for layer, head in [(0, 0), (1, 3)]:
        one = run_with_ablation(model, tokens, heads=[(layer, head)], reference=tokens)
        assert effects[layer, head].item() == pytest.approx((loss_fn(one) - clean).item(), abs=1e-9)


def test_ablation_errors() -> None:
    model = small_model(attn_only=True)
    with pytest.raises(ValueError, match="needs reference tokens"):
        ablation_hooks(model, heads=[(0, 0)], method="mean")
    with pytest.raises(ValueError, match="head 9 is out of range"):
        ablation_hooks(model, heads=[(0, 9)], method="zero")
    with pytest.raises(ValueError, match="attention-only"):
        ablation_hooks(model, neurons=[(0, 1)], method="zero")
    with pytest.raises(ValueError, match="method='median' is invalid"):
        ablation_hooks(model, heads=[(0, 0)], method="median")
