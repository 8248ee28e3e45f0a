"""A patching sweep written as a TransformerLens 2.x user writes it (`transformer_lens.patching`, a metric of
one run's logits), run on circuitlab and checked against circuitlab's native API on the same weights."""

from __future__ import annotations

import pytest
import torch

from circuitlab import HookedTransformer, HookedTransformerConfig, patching
from circuitlab.analysis import logit_diff, patch_activation, patch_head_out_all_pos, patch_resid_pre
from circuitlab.analysis.metrics import PerRunMetric, adapt

N_LAYERS, N_HEADS, N_POS = 2, 4, 6


@pytest.fixture(scope="module")
def setup():
    cfg = HookedTransformerConfig(
        n_layers=N_LAYERS, d_model=32, n_heads=N_HEADS, d_head=8, d_mlp=64, n_ctx=16, d_vocab=50, act_fn="gelu_new",
        seed=3,
    )  # fmt: skip
    model = HookedTransformer(cfg)
    clean_tokens = torch.randint(0, 50, (4, N_POS), generator=torch.Generator().manual_seed(0))
    corrupted_tokens = clean_tokens.clone()
    corrupted_tokens[:, 2] = (clean_tokens[:, 2] + 7) % 50
    answer, distractor = torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6, 7, 8])
    return model, clean_tokens, corrupted_tokens, answer, distractor


def tl_metric(answer, distractor):
    def logit_diff_metric(logits):  # what a TL notebook writes: [batch, pos, d_vocab] -> a number
        rows = torch.arange(logits.shape[0])
        return (logits[rows, -1, answer] - logits[rows, -1, distractor]).mean()

    return logit_diff_metric


def test_tl_program_equals_native_api(setup):
    model, clean_tokens, corrupted_tokens, answer, distractor = setup
    _, clean_cache = model.run_with_cache(clean_tokens)
    metric = tl_metric(answer, distractor)
    native = logit_diff(answer, distractor)

    resid = patching.get_act_patch_resid_pre(model, corrupted_tokens, clean_cache, metric)
    assert resid.shape == (N_LAYERS, N_POS) and resid.dtype == torch.float32
    torch.testing.assert_close(resid, patch_resid_pre(model, clean_tokens, corrupted_tokens, native), atol=1e-5, rtol=0)
    heads = patching.get_act_patch_attn_head_out_all_pos(model, corrupted_tokens, clean_cache, metric)
    torch.testing.assert_close(
        heads, patch_head_out_all_pos(model, clean_tokens, corrupted_tokens, native), atol=1e-5, rtol=0
    )

    block = patching.get_act_patch_block_every(model, corrupted_tokens, clean_cache, metric)
    assert block.shape == (3, N_LAYERS, N_POS)
    for i, act in enumerate(("resid_pre", "attn_out", "mlp_out")):
        expected = patch_activation(model, clean_tokens, corrupted_tokens, native, act)
        torch.testing.assert_close(block[i], expected, atol=1e-5, rtol=0)
    mid = patching.get_act_patch_resid_mid(model, corrupted_tokens, clean_cache, metric)
    expected = patch_activation(model, clean_tokens, corrupted_tokens, native, "resid_mid")
    torch.testing.assert_close(mid, expected, atol=1e-5, rtol=0)

    every = patching.get_act_patch_attn_head_all_pos_every(model, corrupted_tokens, clean_cache, metric)
    assert every.shape == (5, N_LAYERS, N_HEADS)
    by_pos = patching.get_act_patch_attn_head_by_pos_every(model, corrupted_tokens, clean_cache, metric)
    assert by_pos.shape == (5, N_LAYERS, N_POS, N_HEADS)
    for i, act in enumerate(("z", "q", "k", "v", "pattern")):
        for grid, pos in ((every, False), (by_pos, True)):
            expected = patch_activation(model, clean_tokens, corrupted_tokens, native, act, by_pos=pos)
            torch.testing.assert_close(grid[i], expected, atol=1e-5, rtol=0, msg=lambda m, a=act: f"{a}: {m}")
    pattern = patching.get_act_patch_attn_head_pattern_by_pos(model, corrupted_tokens, clean_cache, metric)
    assert pattern.shape == (N_LAYERS, N_HEADS, N_POS)  # TL's order: [layer, head, dest_pos]
    torch.testing.assert_close(pattern, by_pos[4].transpose(1, 2))
    # Every layer's stream before the corrupted position is equal in both runs (run_with_cache computes what
    # the plain forward computes): those cells are not run, their value is exactly the corrupted run's metric.
    base = float(metric(model(corrupted_tokens)).detach())
    assert torch.all(resid[:, :2] == torch.tensor(base, dtype=torch.float32))


def test_generic_patch_with_index_df_and_a_full_logits_metric(setup):
    pd = pytest.importorskip("pandas")
    model, clean_tokens, corrupted_tokens, _, _ = setup
    _, clean_cache = model.run_with_cache(clean_tokens)

    def mean_loss(logits):  # reads every position: no position is skipped
        log_probs = logits.log_softmax(-1)[:, :-1]
        return -log_probs.gather(-1, clean_tokens[:, 1:, None]).mean()

    index_df = pd.DataFrame({"layer": [0, 1, 1], "pos": [2, 2, 5]})
    values = patching.generic_activation_patch(
        model, corrupted_tokens, clean_cache, mean_loss, patching.layer_pos_patch_setter, "resid_pre",
        index_df=index_df,
    )  # fmt: skip
    assert values.shape == (3,)
    for value, (layer, pos) in zip(values, index_df.itertuples(index=False), strict=True):

        def hook(x, hook, pos=pos, layer=layer):
            x = x.clone()
            x[:, pos] = clean_cache["resid_pre", layer][:, pos]
            return x

        logits = model.run_with_hooks(corrupted_tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", hook)])
        torch.testing.assert_close(value, mean_loss(logits), atol=1e-5, rtol=0)
    out, df = patching.generic_activation_patch(
        model, corrupted_tokens, clean_cache, mean_loss, patching.layer_pos_patch_setter, "resid_pre",
        index_axis_names=["layer", "pos"], return_index_df=True,
    )  # fmt: skip
    assert out.shape == (N_LAYERS, N_POS) and len(df) == N_LAYERS * N_POS
    # A hook site the engine does not cover runs one forward per cell, through the hooks.
    scores = patching.generic_activation_patch(
        model, corrupted_tokens, clean_cache, mean_loss, patching.layer_pos_patch_setter, "mlp_post",
        index_axis_names=["layer", "pos"],
    )  # fmt: skip
    assert scores.shape == (N_LAYERS, N_POS)
    torch.testing.assert_close(
        scores[:, :2], torch.full((N_LAYERS, 2), float(mean_loss(model(corrupted_tokens)).detach()))
    )
    assert (scores[:, 2:] - scores[0, 0]).abs().max() > 1e-3


def test_one_run_metrics_are_wrapped_with_their_positions_probed(setup):
    model, _, corrupted_tokens, answer, distractor = setup
    logits = model(corrupted_tokens)
    wrapped = adapt(tl_metric(answer, distractor), logits)
    assert isinstance(wrapped, PerRunMetric) and wrapped.read_positions == [N_POS - 1]
    stacked = torch.stack([logits, logits * 2])
    torch.testing.assert_close(wrapped(stacked), torch.stack([wrapped(logits), wrapped(logits * 2)]))
    assert adapt(logit_diff(answer, distractor), logits) is not None
    reads_all = adapt(lambda x: x[:, :, 0].mean(), logits)
    assert isinstance(reads_all, PerRunMetric) and reads_all.read_positions is None
    # A metric that already maps stacked runs to one value each is used as it is.
    batched = lambda x: x[..., -1, 0].mean(-1)  # noqa: E731
    assert adapt(batched, logits) is batched
    # Native sweeps take a one-run metric too.
    native = patch_resid_pre(model, corrupted_tokens, corrupted_tokens.flip(0), tl_metric(answer, distractor))
    expected = patch_resid_pre(model, corrupted_tokens, corrupted_tokens.flip(0), logit_diff(answer, distractor))
    torch.testing.assert_close(native, expected, atol=1e-5, rtol=0)
