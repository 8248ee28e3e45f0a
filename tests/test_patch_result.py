"""`PatchingResult`: the normalised effect, labels, table / pandas / repr / notebook HTML of a patching sweep."""

from __future__ import annotations

import pytest
import torch

from circuitlab import HookedTransformer, HookedTransformerConfig
from circuitlab.analysis import PatchingResult, activation_patching, logit_diff, patch_activation


@pytest.fixture(scope="module")
def model() -> HookedTransformer:
    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=2, n_ctx=16, d_vocab=20, attn_only=True, seed=0)
    return HookedTransformer(cfg)


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    clean = torch.tensor([[0, 5, 6, 7, 8, 9, 11, 5, 6, 7, 8]])
    corrupted = clean.clone()
    corrupted[0, 5] = 10
    return clean, corrupted


def test_result_holds_the_sweep_and_its_normalisation(model) -> None:
    clean, corrupted = _pair()
    metric = logit_diff(9, 10)
    result = activation_patching(model, clean, corrupted, metric, metric_name="logit diff", progress=False)
    raw = patch_activation(model, clean, corrupted, metric, "resid_pre", progress=False)  # the TL-style tensor
    torch.testing.assert_close(result.values, raw)
    with torch.no_grad():
        c, k = float(metric(model(clean))), float(metric(model(corrupted)))
    assert (result.clean, result.corrupted) == pytest.approx((c, k))
    torch.testing.assert_close(result.normalised, (raw - k) / (c - k))
    assert float(result.normalised[0, 5]) == pytest.approx(
        1.0, abs=1e-4
    )  # the embedding of the changed token: all of it
    assert result.labels["pos"][:2] == ["0:0", "1:5"] and result.labels["layer"] == ["resid_pre 0", "resid_pre 1"]

    table = result.table()
    assert table.columns == ["layer", "pos", "logit diff", "normalised"] and len(table) == raw.numel()
    assert table[5] == {"layer": "resid_pre 0", "pos": "5:9", "logit diff": pytest.approx(float(raw[0, 5])),
                        "normalised": pytest.approx(1.0, abs=1e-4)}  # fmt: skip
    frame = result.to_pandas()
    assert list(frame.columns) == table.columns and frame.shape == (raw.numel(), 4)
    assert frame["normalised"].tolist() == pytest.approx(result.normalised.flatten().tolist())


def test_repr_fits_a_screen_and_html_is_the_coloured_grid(model) -> None:
    clean, corrupted = _pair()
    result = activation_patching(model, clean, corrupted, logit_diff(9, 10), act="z", progress=False)
    assert result.dims == ("layer", "pos", "head") and tuple(result.values.shape) == (2, 11, 2)
    text = repr(result)
    lines = text.splitlines()
    assert lines[0].startswith("PatchingResult z [layer 2, pos 11, head 2] (clean into corrupted)")
    assert len(lines) <= 14 and max(map(len, lines)) <= 200  # the summary and the 10 largest effects
    top = result.top(3)
    effects = [abs(r["normalised"]) for r in top]
    assert effects == sorted(effects, reverse=True) and effects[0] == pytest.approx(
        result.normalised.abs().max().item()
    )

    page = result._repr_html_()
    grid, rows, cols = result.grid()
    assert rows == ["L0H0", "L0H1", "L1H0", "L1H1"] and cols == result.labels["pos"]
    assert page.count("<td ") == grid.numel() and "<script" not in page
    assert "background:rgb(255,255,255)" in page  # cells with no effect (positions before the change): white
    figure = result.figure()
    assert list(figure.data[0].x) == cols and list(figure.data[0].y) == rows
    torch.testing.assert_close(torch.tensor(figure.data[0].z), result.normalised.permute(0, 2, 1).reshape(4, 11),
                               check_dtype=False)  # fmt: skip


def test_from_values_and_bad_shapes() -> None:
    heads = PatchingResult.from_values(torch.tensor([[1.0, 2.0], [3.0, 1.0]]), 3.0, 1.0, act="z", by_pos=False)
    assert heads.dims == ("layer", "head") and heads.labels["head"] == ["H0", "H1"]
    assert heads.normalised.tolist() == [[0.0, 0.5], [1.0, 0.0]]
    same = PatchingResult.from_values(torch.ones(2, 3), 1.0, 1.0, ["a", "b", "c"])
    assert same.normalised is None and same.table()[0]["normalised"] is None and "clean == corrupted" in repr(same)
    with pytest.raises(ValueError, match="got 2 tokens for 3 positions"):
        PatchingResult.from_values(torch.ones(2, 3), 1.0, 0.0, ["a", "b"])
    with pytest.raises(ValueError, match="values have shape"):
        PatchingResult.from_values(torch.ones(2, 3, 4), 1.0, 0.0, act="resid_pre")
