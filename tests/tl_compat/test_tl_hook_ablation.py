"""TransformerLens-style hook ablations (ARENA's head / neuron ablation and induction loss), written as TL
code is, checked against circuitlab's native ablation API on the same weights."""

from __future__ import annotations

from functools import partial

import torch

from circuitlab import HookedTransformer, utils
from circuitlab.analysis import head_ablation_effects, run_with_ablation
from circuitlab.evals import make_repeated_tokens

from ..conftest import small_model


def _loss(model: HookedTransformer, tokens: torch.Tensor, **kwargs) -> torch.Tensor:
    logits = run_with_ablation(model, tokens, **kwargs)
    return utils.lm_cross_entropy_loss(logits, tokens)


def test_hook_ablation() -> None:
    model = small_model(n_layers=2, dtype=torch.float64)
    torch.manual_seed(0)
    tokens = make_repeated_tokens(model, seq_len=10, batch=4)  # [4, 21]: BOS, x, x

    # ---- TL-style program ------------------------------------------------------------------------
    def head_ablation_hook(value: torch.Tensor, hook, head_index_to_ablate: int) -> torch.Tensor:
        value[:, :, head_index_to_ablate, :] = 0.0  # [batch, pos, head_index, d_head]
        return value

    def head_mean_ablation_hook(z: torch.Tensor, hook, head_index_to_ablate: int) -> torch.Tensor:
        z[:, :, head_index_to_ablate, :] = z[:, :, head_index_to_ablate, :].mean((0, 1))
        return z

    def neuron_ablation_hook(post: torch.Tensor, hook, neuron: int) -> None:
        post[:, :, neuron] = 0.0  # in place, returning nothing

    original_loss = model(tokens, return_type="loss")
    zero_losses = torch.zeros(model.cfg.n_layers, model.cfg.n_heads, dtype=torch.float64)
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            zero_losses[layer, head] = model.run_with_hooks(
                tokens,
                return_type="loss",
                fwd_hooks=[(utils.get_act_name("v", layer), partial(head_ablation_hook, head_index_to_ablate=head))],
            )
    mean_loss = model.run_with_hooks(
        tokens,
        return_type="loss",
        fwd_hooks=[
            (lambda name: name == "blocks.1.attn.hook_z", partial(head_mean_ablation_hook, head_index_to_ablate=2))
        ],
    )
    neuron_loss = model.run_with_hooks(
        tokens, return_type="loss", fwd_hooks=[(utils.get_act_name("post", 0), partial(neuron_ablation_hook, neuron=7))]
    )
    per_token = model(tokens, return_type="loss", loss_per_token=True)
    induction_half = per_token[:, 11:].mean()  # loss on the repeat

    # ---- circuitlab's native API -----------------------------------------------------------------
    torch.testing.assert_close(original_loss, utils.lm_cross_entropy_loss(model(tokens), tokens))
    native = head_ablation_effects(
        model, tokens, lambda logits: utils.lm_cross_entropy_loss(logits, tokens), method="zero"
    )
    torch.testing.assert_close(zero_losses - original_loss, native.double(), atol=1e-6, rtol=0)  # native: float32
    torch.testing.assert_close(mean_loss, _loss(model, tokens, heads=[(1, 2)], method="mean", reference=tokens))
    torch.testing.assert_close(neuron_loss, _loss(model, tokens, neurons=[(0, 7)], method="zero"))
    assert (zero_losses != original_loss).all()  # every ablation changed something
    torch.testing.assert_close(
        induction_half, utils.lm_cross_entropy_loss(model(tokens), tokens, per_token=True)[:, 11:].mean()
    )
