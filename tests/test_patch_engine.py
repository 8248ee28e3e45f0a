"""The compute-floor patching engine against a naive one-forward-per-cell loop, on every kind of model:
LayerNorm, RMSNorm, rotary, grouped-query, parallel attention, local windows, bidirectional, attention-only;
prompts that differ at several positions and identical prompts; both directions."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from circuitlab.analysis import logit_diff, next_token_loss, patch_activation

from .conftest import CONFIGS, small_model
from .test_patching import ANSWER, DISTRACTOR, END_POS, N_BATCH, N_POS, naive_patch

KINDS = [
    "ln_mlp_gelu",
    "rms_silu",
    "rotary",
    "gqa_rotary_rms",
    "parallel_attn_mlp",
    "neox_like",
    "llama_like",
    "local_attention",
    "bidirectional",
    "attn_only_no_ln",
    "attn_result",
    "alibi",
    "shortformer",
]
SWEEPS = [
    ("resid_pre", True),
    ("resid_pre", False),
    ("resid_mid", True),
    ("resid_post", True),
    ("attn_out", True),
    ("mlp_out", True),
    ("mlp_out", False),
    ("z", False),
    ("z", True),
    ("q", False),
    ("q", True),
    ("k", False),
    ("k", True),
    ("v", False),
    ("v", True),
    ("pattern", False),
    ("pattern", True),
    ("result", False),
    ("result", True),
]


def prompts(kind: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean and corrupted tokens [3, 7]: 'several' differ at positions 1, 2 and 5; 'late' at 5 only (so
    most cells are before the change); 'same' are identical."""
    gen = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, 40, (N_BATCH, N_POS), generator=gen)
    corrupted = clean.clone()
    changed = {"several": [1, 2, 5], "late": [5], "same": []}[kind]
    for p in changed:
        corrupted[:, p] = (clean[:, p] + 1 + torch.randint(0, 38, (N_BATCH,), generator=gen)) % 40
    return clean, corrupted


def applicable(config: dict, act: str) -> bool:
    if act == "result":
        return bool(config.get("use_attn_result"))
    if act in ("resid_mid", "mlp_out"):
        return not config.get("attn_only") and (act == "mlp_out" or not config.get("parallel_attn_mlp"))
    return True


@pytest.mark.parametrize("kind", KINDS)
def test_every_sweep_equals_naive_loop(kind):
    config = CONFIGS[kind]
    model = small_model(**config)
    clean, corrupted = prompts("several", seed=KINDS.index(kind))
    metric = logit_diff(ANSWER, DISTRACTOR, pos=END_POS)
    for act, by_pos in SWEEPS:
        if not applicable(config, act):
            continue
        direction = "noise" if (act, by_pos) in (("z", True), ("resid_pre", True), ("k", False)) else "denoise"
        kw = dict(by_pos=by_pos, direction=direction, max_variants=3)
        fast = patch_activation(model, clean, corrupted, metric, act, **kw)
        with torch.no_grad():
            naive = naive_patch(model, clean, corrupted, metric, act, by_pos, direction=direction)
        assert fast.shape == naive.shape, (act, by_pos)
        torch.testing.assert_close(fast, naive, atol=1e-5, rtol=0, msg=lambda m, a=act, b=by_pos: f"{a} {b}: {m}")


@pytest.mark.parametrize("kind", ["ln_mlp_gelu", "llama_like", "bidirectional"])
def test_late_difference_full_logit_metric_and_last_position(kind):
    """A change late in the prompt (most cells equal, skipped exactly), a metric over all positions (the
    loss: no position restriction) and one reading only the last position."""
    model = small_model(**CONFIGS[kind])
    clean, corrupted = prompts("late")
    for metric in (next_token_loss(clean), logit_diff(ANSWER, DISTRACTOR)):
        for act, by_pos in (("resid_pre", True), ("z", True), ("v", False), ("mlp_out", True)):
            fast = patch_activation(model, clean, corrupted, metric, act, by_pos=by_pos)
            with torch.no_grad():
                naive = naive_patch(model, clean, corrupted, metric, act, by_pos)
            torch.testing.assert_close(fast, naive, atol=1e-5, rtol=0)
            if kind != "bidirectional" and act == "resid_pre":
                base = metric(model(corrupted))
                expected = torch.full_like(fast[:, :5], float(base.detach()))
                assert torch.equal(fast[:, :5], expected)  # equal cells: exactly the base metric


def test_identical_prompts_give_the_base_metric_exactly():
    model = small_model(**CONFIGS["rotary"])
    clean, corrupted = prompts("same")
    metric = logit_diff(ANSWER, DISTRACTOR)
    base = float(metric(model(corrupted)).detach())
    for act, by_pos in SWEEPS:
        if applicable(CONFIGS["rotary"], act):
            out = patch_activation(model, clean, corrupted, metric, act, by_pos=by_pos)
            assert torch.all(out == base), act


@pytest.mark.parametrize("kind", ["ln_mlp_gelu", "shortformer"])
def test_live_hooks_fire_in_every_patched_run(kind):
    """With a hook on the model the sweep goes through the hooks (the engine would bypass them)."""
    model = small_model(**CONFIGS[kind])
    clean, corrupted = prompts("several")
    metric = logit_diff(ANSWER, DISTRACTOR)
    calls = []
    model.add_hook("blocks.1.hook_resid_post", lambda x, hook: calls.append(1))
    try:
        out = patch_activation(model, clean, corrupted, metric, "resid_pre", max_variants=100)
    finally:
        model.reset_hooks()
    assert calls
    torch.testing.assert_close(out, patch_activation(model, clean, corrupted, metric, "resid_pre"), atol=1e-5, rtol=0)
    with torch.no_grad():
        naive = naive_patch(model, clean, corrupted, metric, "resid_pre", True)
    torch.testing.assert_close(out, naive, atol=1e-5, rtol=0)


def _flops(fn) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def test_work_is_cut_to_what_the_cells_need():
    """Causality, equal-cell skipping and the metric's position: a resid_pre sweep on a 4-layer model with the
    corruption at position 5 of 7 does a small fraction of the naive loop's multiply-adds."""
    model = small_model(n_layers=4, d_vocab=40)
    clean, corrupted = prompts("late")
    metric = logit_diff(ANSWER, DISTRACTOR)
    model.requires_grad_(False)
    fast = _flops(lambda: patch_activation(model, clean, corrupted, metric, "resid_pre"))
    naive = _flops(lambda: naive_patch(model, clean, corrupted, metric, "resid_pre", True))
    assert fast < 0.15 * naive, (fast, naive)
