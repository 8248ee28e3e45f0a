"""Linear probes recover planted features; interventions change a model's output exactly as the
residual-stream algebra says they must."""

from __future__ import annotations

import pytest
import torch

from circuitlab import HookedTransformer, HookedTransformerConfig
from circuitlab.analysis.probes import (
    IGNORE,
    probe_layers,
    random_init_like,
    run_with_intervention,
    split_rows,
    steering_vectors,
    train_linear_probe,
)


def planted(n: int = 1500, d: int = 16, n_out: int = 4, seed: int = 0):
    """Activations whose label per output is the argmax of three planted linear read-outs (+ scale and offset)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen) * torch.linspace(0.1, 10, d) + 3.0  # badly scaled, off-centre
    readout = torch.randn(d, n_out, 3, generator=gen)
    labels = torch.einsum("nd,doc->noc", x - 3.0, readout).argmax(-1)  # [n, n_out]
    return x, labels, readout


def test_probe_recovers_a_planted_linear_feature_and_not_noise() -> None:
    x, labels, _ = planted()
    probe = train_linear_probe(x[:1000], labels[:1000], n_classes=3)
    acc = probe.accuracy(x[1000:], labels[1000:])
    assert acc.shape == (4,) and acc.min() > 0.95  # held-out rows, every output
    shuffled = labels[torch.randperm(1500, generator=torch.Generator().manual_seed(1))]
    chance = train_linear_probe(x[:1000], shuffled[:1000], n_classes=3, max_iter=40)
    chance = chance.accuracy(x[1000:], shuffled[1000:])
    assert chance.max() < 0.6  # labels unrelated to x: no better than the majority class on held-out rows
    # The probe works on raw activations: its logits equal a direct affine map of x.
    assert torch.allclose(probe.logits(x[:5]), torch.einsum("nd,doc->noc", x[:5], probe.weight) + probe.bias)


def test_probe_ignores_unscored_labels_and_rejects_bad_input() -> None:
    x, labels, _ = planted(n=800, n_out=2)
    noisy = labels.clone()
    noisy[:400, 0] = IGNORE  # half the rows unscored for output 0
    probe = train_linear_probe(x[:600], noisy[:600], n_classes=3)
    assert probe.accuracy(x[600:], labels[600:]).min() > 0.9
    with pytest.raises(ValueError, match="rows"):
        train_linear_probe(x[:10], labels[:9])
    with pytest.raises(ValueError, match="labels must lie"):
        train_linear_probe(x[:10], labels[:10] + 5, n_classes=3)
    with pytest.raises(ValueError, match="test_fraction"):
        split_rows(10, 1.5, 0)


def tiny_model(**kw) -> HookedTransformer:
    cfg = HookedTransformerConfig(n_layers=2, d_model=24, n_heads=2, n_ctx=8, d_vocab=12, seed=0, **kw)
    return HookedTransformer(cfg).eval()


def test_probe_layers_on_a_model_reads_the_current_token_and_splits_by_game() -> None:
    torch.manual_seed(0)
    model = tiny_model()
    tokens = torch.randint(0, 12, (200, 8), generator=torch.Generator().manual_seed(0))
    labels = (tokens % 3)[..., None]  # [batch, pos, 1]: a function of the current token
    mask = torch.ones_like(tokens, dtype=torch.bool)
    sweep = probe_layers(model, tokens, labels, mask, n_classes=3)
    assert sweep.hook_names == ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    assert sweep.test_acc.shape == (3, 1) and sweep.n_train + sweep.n_test == 200 * 8
    assert sweep.n_test == 40 * 8  # whole games held out
    assert float(sweep.test_acc[0, 0]) > 0.99  # the embedding holds the token itself
    other = random_init_like(model, seed=5)
    assert other.cfg.seed == 5 and not torch.equal(other.W_E, model.W_E)
    assert other.cfg.d_model == model.cfg.d_model


def test_intervention_add_and_project_out_act_exactly_on_the_residual_stream() -> None:
    model = tiny_model(attn_only=True, normalization_type=None)
    tokens = torch.randint(0, 12, (4, 8), generator=torch.Generator().manual_seed(1))
    hook = "blocks.1.hook_resid_post"  # the last residual: logits = resid @ W_U + b_U
    clean, cache = model.run_with_cache(tokens, names_filter=[hook])
    resid = cache[hook]
    target = torch.tensor([3, 5, 7, 9])
    push = 50 * model.W_U[:, target].T  # [batch, d_model]: pushes each row toward its own target token
    pos = torch.tensor([7, 0, 3, 5])
    logits = run_with_intervention(model, tokens, hook, add=push, positions=pos)
    rows = torch.arange(4)
    assert torch.equal(logits[rows, pos].argmax(-1), target)
    expected = clean.clone()
    expected[rows, pos] += push @ model.W_U
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)  # other positions untouched
    # Projecting out a direction leaves nothing along it: the logit change is -(x.u) u @ W_U.
    u = torch.nn.functional.normalize(torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(2)), dim=0)
    projected = run_with_intervention(model, tokens, hook, project_out=u[None])
    removed = (resid @ u)[..., None] * u  # [batch, pos, d_model]
    torch.testing.assert_close(projected, clean - removed @ model.W_U, atol=1e-4, rtol=1e-4)
    # Projecting out the span of W_U's column for token 3 and a random direction, per row at one position.
    dirs = torch.stack([model.W_U[:, 3], u])[None].expand(4, -1, -1)
    per_row = run_with_intervention(model, tokens, hook, project_out=dirs, positions=pos)
    q = torch.linalg.qr(dirs[0].T).Q
    new_resid = resid[rows, pos] - (resid[rows, pos] @ q) @ q.T
    torch.testing.assert_close(per_row[rows, pos], new_resid @ model.W_U + model.b_U, atol=1e-4, rtol=1e-4)


def test_steering_vectors_make_the_probe_read_the_target_class() -> None:
    x, labels, _ = planted(n=1500, n_out=3)
    probe = train_linear_probe(x[:1000], labels[:1000], n_classes=3)
    outputs = torch.tensor([0, 1, 2, 0, 1] * 20)
    acts = x[1000:1100]
    push = steering_vectors(probe, acts, outputs, to_class=2, margin=3.0)
    after = probe.logits(acts + push)[torch.arange(100), outputs]  # [rows, classes]
    assert (after.argmax(-1) == 2).all()
    before = probe.logits(acts)[torch.arange(100), outputs]
    holds = before[:, 2] - before[:, :2].max(-1).values >= 3.0  # already read as class 2 by the margin
    assert (push[holds] == 0).all() and (push[~holds].norm(dim=-1) > 0).all()
