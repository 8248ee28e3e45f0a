"""The forward pass: return types, loss, input checks, initialisation, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from circuitlab import HookedTransformer

from .conftest import small_cfg, small_model


def test_return_types(tokens: torch.Tensor) -> None:
    model = small_model()
    logits = model(tokens)
    assert logits.shape == (3, 11, 40)
    loss = model(tokens, return_type="loss")
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 40), tokens[:, 1:].reshape(-1))
    torch.testing.assert_close(loss, expected)
    per_token = model(tokens, return_type="loss", loss_per_token=True)
    assert per_token.shape == (3, 10)
    torch.testing.assert_close(per_token.mean(), expected)
    both_logits, both_loss = model(tokens, return_type="both")
    torch.testing.assert_close(both_logits, logits)
    torch.testing.assert_close(both_loss, expected)
    assert model(tokens, return_type=None) is None
    torch.testing.assert_close(model(tokens[0]), logits[:1])  # a 1-D sequence gets a batch dim


def test_stop_at_layer_returns_the_residual(tokens: torch.Tensor) -> None:
    model = small_model()
    _, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(model(tokens, stop_at_layer=1), cache["resid_pre", 1])
    torch.testing.assert_close(model(tokens, stop_at_layer=0), cache["resid_pre", 0])


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (torch.full((1, 4), 40), r"token ids must lie in \[0, d_vocab=40\)"),
        (torch.full((1, 4), -1), "token ids must lie"),
        (torch.zeros(1, 25, dtype=torch.long), "longer than n_ctx=24"),
        (torch.zeros(1, 2, 3, dtype=torch.long), r"\[batch, pos\]"),
        (torch.zeros(1, 4), "integer tensor"),
        ("hello", "tokenizer"),
    ],
)
def test_bad_tokens_get_clear_errors(bad, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        small_model()(bad)


def test_seed_makes_initialisation_reproducible() -> None:
    a, b, c = small_model(seed=5), small_model(seed=5), small_model(seed=6)
    for (name, pa), pb, pc in zip(
        a.state_dict().items(), b.state_dict().values(), c.state_dict().values(), strict=True
    ):
        assert torch.equal(pa, pb), name
        if name.endswith("W_Q"):
            assert not torch.equal(pa, pc)
    model = HookedTransformer(small_cfg(d_model=64, n_heads=4, d_head=16, seed=0))
    assert abs(model.W_Q.std().item() - 0.8 / 64**0.5) < 0.01  # TransformerLens's default init_range
    assert (model.blocks[0].ln1.w == 1).all() and (model.b_Q == 0).all()


def test_float64_and_gradients(tokens: torch.Tensor) -> None:
    model = small_model(dtype=torch.float64)
    assert model(tokens).dtype == torch.float64
    loss = model(tokens, return_type="loss")
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    # One SGD step lowers the loss: the model trains.
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.05 * p.grad
    assert model(tokens, return_type="loss") < loss


def test_qk_and_ov_circuits_equal_the_products() -> None:
    model = small_model(n_key_value_heads=2)
    layer, head = 1, 3
    W_Q, W_K, W_V, W_O = (getattr(model, n)[layer, head] for n in ("W_Q", "W_K", "W_V", "W_O"))
    torch.testing.assert_close(model.QK[layer, head].AB, W_Q @ W_K.T)
    torch.testing.assert_close(model.OV[layer, head].AB, W_V @ W_O)
    assert model.QK.mdim == 8


def test_n_params_counts_weight_matrices() -> None:
    cfg = small_cfg()
    model = HookedTransformer(cfg)
    counted = sum(
        p.numel()
        for n, p in model.named_parameters()
        if n.split(".")[-1] in ("W_Q", "W_K", "W_V", "W_O", "W_in", "W_out")
    )
    assert cfg.n_params == counted
