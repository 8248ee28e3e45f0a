"""Patching: batched sweeps against a naive one-forward-per-cell loop, path patching against hand
computations, attribution patching against exact patching, metrics, errors."""

from __future__ import annotations

import pytest
import torch

from circuitlab.analysis import (
    attribution_patch,
    logit_diff,
    next_token_loss,
    normalized_logit_diff,
    patch_activation,
    patch_head_out_all_pos,
    patch_resid_pre,
    path_patch,
)
from circuitlab.analysis.metrics import answer_prob, loss
from circuitlab.model.names import get_act_name

from .conftest import small_model

N_BATCH, N_POS = 3, 7


def pair(seed: int = 0, d_vocab: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean tokens and a corruption that changes two positions."""
    gen = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, d_vocab, (N_BATCH, N_POS), generator=gen)
    corrupted = clean.clone()
    corrupted[:, 2] = torch.randint(0, d_vocab, (N_BATCH,), generator=gen)
    corrupted[:, 4] = torch.randint(0, d_vocab, (N_BATCH,), generator=gen)
    return clean, corrupted


ANSWER, DISTRACTOR = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])
END_POS = torch.tensor([6, 5, 4])  # per-row read positions, as IOI's end_pos


def naive_patch(model, clean, corrupted, metric, act, by_pos, direction="denoise"):
    """One forward per cell, with a hook that swaps that one cell: the reference for the batched sweeps."""
    base, source = (corrupted, clean) if direction == "denoise" else (clean, corrupted)
    _, source_cache = model.run_with_cache(source)
    rows = []
    for layer in range(model.cfg.n_layers):
        name = get_act_name(act, layer)
        src = source_cache[name]
        if act in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"):
            cells = [(slice(None), slice(p, p + 1)) for p in range(src.shape[1])] if by_pos else [(slice(None),)]
            grid = (src.shape[1],) if by_pos else ()
        elif act == "pattern":  # [batch, head, query, key]
            heads, n_pos = src.shape[1], src.shape[2]
            if by_pos:
                cells = [(slice(None), h, q) for q in range(n_pos) for h in range(heads)]
                grid = (n_pos, heads)
            else:
                cells = [(slice(None), h) for h in range(heads)]
                grid = (heads,)
        else:  # [batch, pos, head, d]
            n_pos, heads = src.shape[1], src.shape[2]
            if by_pos:
                cells = [(slice(None), p, h) for p in range(n_pos) for h in range(heads)]
                grid = (n_pos, heads)
            else:
                cells = [(slice(None), slice(None), h) for h in range(heads)]
                grid = (heads,)
        values = []
        for cell in cells:

            def hook(x, hook, cell=cell, src=src):
                x = x.clone()
                x[cell] = src[cell]
                return x

            values.append(metric(model.run_with_hooks(base, fwd_hooks=[(name, hook)])))
        rows.append(torch.stack(values).view(grid))
    return torch.stack(rows)


CASES = [
    ("resid_pre", True),
    ("resid_mid", True),
    ("resid_post", True),
    ("attn_out", True),
    ("mlp_out", True),
    ("resid_post", False),
    ("z", False),
    ("z", True),
    ("pattern", False),
    ("pattern", True),
    ("v", True),
]


@pytest.mark.parametrize(("act", "by_pos"), CASES)
def test_batched_sweep_equals_naive_loop(act, by_pos):
    model = small_model(dtype=torch.float64)
    clean, corrupted = pair()
    metric = logit_diff(ANSWER, DISTRACTOR, pos=END_POS)
    # max_variants=5 splits every layer's cells into several chunks.
    batched = patch_activation(model, clean, corrupted, metric, act, by_pos=by_pos, max_variants=5)
    naive = naive_patch(model, clean, corrupted, metric, act, by_pos)
    assert batched.shape == naive.shape
    torch.testing.assert_close(batched, naive, atol=1e-5, rtol=0)
    unpatched = metric(model(corrupted))
    assert (naive - unpatched).abs().max() > 1e-3  # the patches do change the metric: the comparison has teeth


@pytest.mark.parametrize(
    "metric_name", ["normalized", "loss", "prob"]
)  # a non-position metric (loss) takes the full-logits path
def test_other_metrics_and_noising_equal_naive_loop(metric_name):
    model = small_model(dtype=torch.float64, act_fn="relu", normalization_type="RMS")
    clean, corrupted = pair(1)
    if metric_name == "normalized":
        metric = normalized_logit_diff(ANSWER, DISTRACTOR, model(clean), model(corrupted))
    elif metric_name == "loss":
        metric = next_token_loss(clean)
    else:
        metric = answer_prob(ANSWER, pos=-2)
    for act, by_pos in [("resid_pre", True), ("z", True)]:
        batched = patch_activation(model, clean, corrupted, metric, act, by_pos=by_pos, direction="noise")
        naive = naive_patch(model, clean, corrupted, metric, act, by_pos, direction="noise")
        torch.testing.assert_close(batched, naive, atol=1e-5, rtol=0)


def test_head_result_and_attn_only_models():
    for overrides in (dict(use_attn_result=True), dict(attn_only=True, normalization_type=None, n_layers=3)):
        model = small_model(dtype=torch.float64, **overrides)
        clean, corrupted = pair(2)
        metric = logit_diff(ANSWER, DISTRACTOR)
        act = "result" if overrides.get("use_attn_result") else "z"
        batched = patch_head_out_all_pos(model, clean, corrupted, metric, act=act)
        torch.testing.assert_close(batched, naive_patch(model, clean, corrupted, metric, act, False), atol=1e-5, rtol=0)


def test_patching_identities():
    model = small_model(dtype=torch.float64)
    clean, corrupted = pair(3)
    metric = normalized_logit_diff(ANSWER, DISTRACTOR, model(clean), model(corrupted))
    resid = patch_resid_pre(model, clean, corrupted, metric)
    # Denoising the whole residual stream before layer 0 gives the clean run: metric 1; the positions the
    # corruption did not touch, before any mixing, change nothing: metric 0.
    whole = patch_activation(model, clean, corrupted, metric, "resid_pre", by_pos=False)
    torch.testing.assert_close(whole, torch.ones_like(whole), atol=1e-9, rtol=0)
    untouched = [p for p in range(N_POS) if p not in (2, 4)]
    torch.testing.assert_close(resid[0, untouched], torch.zeros(len(untouched), dtype=torch.float64))


def test_shape_mismatch_is_refused():
    model = small_model()
    clean, corrupted = pair()
    metric = logit_diff(ANSWER, DISTRACTOR)
    for fn in (
        lambda c: patch_resid_pre(model, clean, c, metric),
        lambda c: path_patch(model, clean, c, metric),
        lambda c: attribution_patch(model, clean, c, metric, "resid_pre"),
    ):
        with pytest.raises(ValueError, match=r"\(3, 7\).*\(3, 6\).*equal length"):
            fn(corrupted[:, :-1])
    with pytest.raises(ValueError, match="direction"):
        patch_resid_pre(model, clean, corrupted, metric, direction="sideways")
    with pytest.raises(ValueError, match="cannot be patched"):
        patch_activation(model, clean, corrupted, metric, "embed")


def test_progress_bar_when_asked(capsys):
    model = small_model()
    clean, corrupted = pair()
    patch_resid_pre(model, clean, corrupted, logit_diff(ANSWER, DISTRACTOR), progress=True, max_variants=2)
    assert "patching resid_pre" in capsys.readouterr().err
    patch_resid_pre(model, clean, corrupted, logit_diff(ANSWER, DISTRACTOR), progress=False)
    assert capsys.readouterr().err == ""


def test_metric_values():
    model = small_model(dtype=torch.float64)
    clean, corrupted = pair()
    logits = model(clean)
    rows = torch.arange(N_BATCH)
    expected = (logits[rows, END_POS, ANSWER] - logits[rows, END_POS, DISTRACTOR]).mean()
    torch.testing.assert_close(logit_diff(ANSWER, DISTRACTOR, pos=END_POS)(logits), expected)
    stacked = torch.stack([logits, model(corrupted)])  # [variant, batch, pos, vocab] -> [variant]
    assert logit_diff(ANSWER, DISTRACTOR)(stacked).shape == (2,)
    norm = normalized_logit_diff(ANSWER, DISTRACTOR, logits, stacked[1])
    torch.testing.assert_close(norm(stacked), torch.tensor([1.0, 0.0], dtype=torch.float64))
    model_loss = model(clean, return_type="loss").double()  # the model's loss is computed in float32
    torch.testing.assert_close(next_token_loss(clean)(logits), model_loss, atol=1e-6, rtol=0)
    probs = logits.softmax(-1)[rows, -1, ANSWER].mean()
    torch.testing.assert_close(answer_prob(ANSWER)(logits), probs)
    mask = torch.zeros(N_BATCH, N_POS, dtype=torch.bool)
    mask[:, 3] = True
    targets = torch.full((N_BATCH, N_POS), 7)
    torch.testing.assert_close(loss(targets, mask)(logits), -logits.log_softmax(-1)[:, 3, 7].mean())


# ---- path patching -------------------------------------------------------------------------------
def test_path_patching_all_layer0_heads_to_resid_is_activation_patching():
    """1-layer attention-only model: senders = every head, receiver = the residual stream."""
    model = small_model(dtype=torch.float64, n_layers=1, attn_only=True, normalization_type=None)
    clean, corrupted = pair(4)
    metric = logit_diff(ANSWER, DISTRACTOR)
    heads = [(0, h) for h in range(model.cfg.n_heads)]
    path = path_patch(model, clean, corrupted, metric, receivers="resid", senders=heads)
    _, corrupted_cache = model.run_with_cache(corrupted)
    hook = lambda z, hook: corrupted_cache["z", 0]  # noqa: E731
    patched = metric(model.run_with_hooks(clean, fwd_hooks=[("blocks.0.attn.hook_z", hook)]))
    torch.testing.assert_close(path, patched)
    assert abs(float((patched - metric(model(clean))).detach())) > 1e-3


def test_path_patching_to_resid_freezes_later_heads():
    """2 attention-only layers: the sender's output difference reaches the logits only directly."""
    model = small_model(dtype=torch.float64, attn_only=True, normalization_type="LN")
    clean, corrupted = pair(5)
    metric = logit_diff(ANSWER, DISTRACTOR)
    _, clean_cache = model.run_with_cache(clean)
    _, corrupted_cache = model.run_with_cache(corrupted)
    sweep = path_patch(model, clean, corrupted, metric)  # every sender head on its own -> [layer, head]
    for layer, head in [(0, 1), (1, 3)]:
        delta = (corrupted_cache["z", layer][:, :, head] - clean_cache["z", layer][:, :, head]) @ model.W_O[layer, head]
        resid = clean_cache["resid_post", 1] + delta
        expected = metric(model.unembed(model.ln_final(resid)))
        torch.testing.assert_close(sweep[layer, head], expected.detach())
        single = path_patch(model, clean, corrupted, metric, senders=[(layer, head)])
        torch.testing.assert_close(single, sweep[layer, head])


def test_path_patching_sender_to_receiver_head_query():
    """Sender L0H1 -> receiver L1H2's query, checked against recomputing that query by hand."""
    model = small_model(dtype=torch.float64, attn_only=True, normalization_type="LN")
    clean, corrupted = pair(6)
    metric = logit_diff(ANSWER, DISTRACTOR)
    _, clean_cache = model.run_with_cache(clean)
    _, corrupted_cache = model.run_with_cache(corrupted)
    sender, receiver = 1, 2
    delta = (corrupted_cache["z", 0][:, :, sender] - clean_cache["z", 0][:, :, sender]) @ model.W_O[0, sender]
    resid = clean_cache["resid_pre", 1] + delta  # other layer-0 heads frozen to clean
    block = model.blocks[1]
    q_receiver = block.ln1(resid) @ block.attn.W_Q[receiver] + block.attn.b_Q[receiver]

    def patch_q(q, hook):
        q = q.clone()
        q[:, :, receiver] = q_receiver
        return q

    expected = metric(model.run_with_hooks(clean, fwd_hooks=[("blocks.1.attn.hook_q", patch_q)]))
    got = path_patch(
        model, clean, corrupted, metric, receivers=[(1, receiver)], senders=[(0, sender)], receiver_input="q"
    )
    torch.testing.assert_close(got, expected.detach())
    # Through the receiver only: different from the sender's whole effect, and from another receiver.
    whole = path_patch(model, clean, corrupted, metric, senders=[(0, sender)])
    other = path_patch(model, clean, corrupted, metric, receivers=[(1, 0)], senders=[(0, sender)], receiver_input="q")
    assert abs(float(got - whole)) > 1e-4 and abs(float(got - other)) > 1e-4
    # The sweep over senders (batched) agrees with the single call, and only layer 0 can send.
    sweep = path_patch(model, clean, corrupted, metric, receivers=[(1, receiver)], receiver_input="q", max_variants=3)
    torch.testing.assert_close(sweep[0, sender], got)
    assert sweep[1].isnan().all() and not sweep[0].isnan().any()


def test_path_patching_validates():
    model = small_model()
    clean, corrupted = pair()
    metric = logit_diff(ANSWER, DISTRACTOR)
    with pytest.raises(ValueError, match="before every receiver"):
        path_patch(model, clean, corrupted, metric, receivers=[(0, 1)], senders=[(0, 2)])
    with pytest.raises(ValueError, match="receiver_input"):
        path_patch(model, clean, corrupted, metric, receivers=[(1, 1)], receiver_input="x")


# ---- attribution patching ------------------------------------------------------------------------
def test_attribution_patching_is_exact_where_the_metric_is_linear():
    """No final norm: the logit difference is linear in the last residual stream and in the last
    layer's head outputs, so the linear estimate equals exact patching there."""
    model = small_model(dtype=torch.float64, normalization_type=None)
    clean, corrupted = pair(7)
    metric = logit_diff(ANSWER, DISTRACTOR, pos=END_POS)
    for act in ("resid_post", "mlp_out"):
        exact = patch_activation(model, clean, corrupted, metric, act)
        approx = attribution_patch(model, clean, corrupted, metric, act)
        torch.testing.assert_close(approx[-1], exact[-1], atol=1e-9, rtol=0)
    # ... but not exact in earlier layers (the comparison is not vacuous).
    exact = patch_activation(model, clean, corrupted, metric, "resid_pre")
    approx = attribution_patch(model, clean, corrupted, metric, "resid_pre")
    assert (approx - exact).abs().max() > 1e-4


ATTRIBUTION_SWEEPS = [
    (act, by_pos)
    for act in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z", "result", "q", "k", "v", "pattern")
    for by_pos in (True, False)
]


@pytest.mark.parametrize(("act", "by_pos"), ATTRIBUTION_SWEEPS)
def test_attribution_patching_tracks_exact_patching(act, by_pos):
    """Every sweep, on a small, nearly linear model (small weights): the estimate is close to exact patching."""
    model = small_model(dtype=torch.float64, init_range=0.05, use_attn_result=True)
    clean, corrupted = pair(8)
    metric = logit_diff(ANSWER, DISTRACTOR, pos=END_POS)
    for direction in ("denoise", "noise"):
        exact = patch_activation(model, clean, corrupted, metric, act, by_pos=by_pos, direction=direction)
        approx = attribution_patch(model, clean, corrupted, metric, act, by_pos=by_pos, direction=direction)
        assert approx.shape == exact.shape
        base = metric(model(corrupted if direction == "denoise" else clean))
        effect_exact, effect_approx = (exact - base).flatten(), (approx - base).flatten()
        if len(effect_exact) > 2:  # (whole-stream sweeps have one value per layer)
            corr = torch.corrcoef(torch.stack([effect_exact, effect_approx]))[0, 1]
            assert corr > 0.95, corr
        bound = 0.3 if len(effect_exact) > 2 else 0.5  # a whole-stream patch is a large, less linear change
        assert (effect_approx - effect_exact).abs().max() < bound * effect_exact.abs().max()


def test_path_patching_with_frozen_mlps_is_the_direct_path():
    """With every other head and every MLP frozen, a sender reaches the residual stream only directly."""
    model = small_model(dtype=torch.float64)
    clean, corrupted = pair(9)
    metric = logit_diff(ANSWER, DISTRACTOR, pos=END_POS)
    _, clean_cache = model.run_with_cache(clean)
    _, corrupted_cache = model.run_with_cache(corrupted)
    frozen = path_patch(model, clean, corrupted, metric, freeze_mlps=True)
    free = path_patch(model, clean, corrupted, metric)
    for layer, head in [(0, 2), (1, 1)]:  # a later layer's MLP also reads the sender: frozen here
        z_delta = corrupted_cache["z", layer][:, :, head] - clean_cache["z", layer][:, :, head]
        resid = clean_cache["resid_post", 1] + z_delta @ model.W_O[layer, head]
        expected = metric(model.unembed(model.ln_final(resid))).detach()
        torch.testing.assert_close(frozen[layer, head], expected)
        assert abs(float(free[layer, head] - expected)) > 1e-6  # recomputed MLPs carry part of the effect
