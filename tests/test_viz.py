"""Figures hold the numbers they are given, label tokens, and render to valid PNGs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from circuitlab import HookedTransformer, HookedTransformerConfig, viz
from circuitlab.analysis import composition_scores, full_ov_circuit, head_scores, logit_lens


@pytest.fixture(scope="module")
def model() -> HookedTransformer:
    cfg = HookedTransformerConfig(n_layers=2, d_model=30, n_heads=3, n_ctx=16, d_vocab=24, attn_only=True, seed=0)
    return HookedTransformer(cfg)


@pytest.fixture(scope="module")
def toks() -> torch.Tensor:
    return torch.randint(0, 24, (2, 10), generator=torch.Generator().manual_seed(1))


def test_import_is_light() -> None:
    code = "import sys, circuitlab, circuitlab.viz; assert not {'plotly', 'torch', 'matplotlib'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_attention_pattern_and_grid(model, toks) -> None:
    _, cache = model.run_with_cache(toks)
    words = [str(int(t)) for t in toks[0]]
    one = viz.attention_pattern(cache["pattern", 1][0, 2], words, title="L1H2")
    np.testing.assert_allclose(np.asarray(one.data[0].z), cache["pattern", 1][0, 2].numpy(), rtol=1e-6)
    assert list(one.data[0].y) == [f"{i}:{w}" for i, w in enumerate(words)]
    assert one.layout.yaxis.autorange == "reversed"  # queries top to bottom

    grid = viz.attention_grid(cache, words, batch_index=1)
    assert len(grid.data) == 2 * 3 and [t.name for t in grid.data][:4] == ["L0H0", "L0H1", "L0H2", "L1H0"]
    np.testing.assert_allclose(np.asarray(grid.data[5].z), cache["pattern", 1][1, 2].numpy(), rtol=1e-6)
    same = viz.attention_grid(viz.patterns_from_cache(cache, 1), words)
    np.testing.assert_array_equal(np.asarray(same.data[5].z), np.asarray(grid.data[5].z))
    with pytest.raises(ValueError, match=r"\[layer, head, query, key\]"):
        viz.attention_grid(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="3 token labels for 10 positions"):
        viz.attention_pattern(cache["pattern", 0][0, 0], ["a", "b", "c"])


def test_attention_labels_at_every_length() -> None:
    """Token labels on both axes at every length up to n_ctx: all of them up to 64 (smaller font), every k-th
    past that; "query" / "key" axis titles on the single pattern and the grid."""
    for n, step in ((10, 1), (64, 1), (96, 2), (200, 4)):
        words = [f"t{i}" for i in range(n)]
        fig = viz.attention_pattern(torch.full((n, n), 1.0 / n), words)
        for axis in (fig.layout.xaxis, fig.layout.yaxis):
            assert list(axis.tickvals) == [f"{i}:t{i}" for i in range(0, n, step)]
        assert fig.layout.xaxis.title.text == "key" and fig.layout.yaxis.title.text == "query"
        assert fig.layout.xaxis.tickfont.size <= (11 if n <= 16 else 7)
    grid = viz.attention_grid(torch.full((2, 2, 40, 40), 1 / 40), [str(i % 7) for i in range(40)])
    assert grid.layout.xaxis3.title.text == "key" and grid.layout.yaxis.title.text == "query"
    assert list(grid.layout.yaxis.tickvals) == [f"{i}:{i % 7}" for i in range(0, 40, 2)]  # 32 at most per axis
    assert grid.layout.yaxis.showticklabels and not grid.layout.yaxis2.showticklabels  # the outer edge only


def test_token_predictions_ranks_match_the_logits(model, toks) -> None:
    preds = viz.token_predictions(model, toks[:1], top_k=4)
    logits = model(toks[:1])[0].detach()
    assert len(preds) == 10 and preds[-1].rank is None
    for p in preds[:-1]:
        nxt = int(toks[0, p.position + 1])
        order = logits[p.position].argsort(descending=True).tolist()
        assert p.rank == order.index(nxt) and p.next_token == str(nxt)
        assert [w for w, _ in p.top] == [str(i) for i in order[:4]]
        assert p.prob == pytest.approx(float(logits[p.position].softmax(-1)[nxt]), rel=1e-5)
    table = viz.predictions_table(preds)
    assert list(table.data[0].cells.values[3])[:-1] == [p.rank for p in preds[:-1]]


def test_test_prompt_prints_like_transformer_lens(model, toks, capsys) -> None:
    assert viz.test_prompt(model, toks[0, :6], int(toks[0, 6])) is None  # prints and returns None, as in TL
    capsys.readouterr()
    result = viz.test_prompt(model, toks[0, :6], [int(toks[0, 6]), int(toks[0, 7])], top_k=3, return_result=True)
    out = capsys.readouterr().out
    logits = model(toks[:1, :8])[0].detach()
    for i, pos in enumerate((5, 6)):
        answer = int(toks[0, pos + 1])
        assert result.ranks[i] == logits[pos].argsort(descending=True).tolist().index(answer)
        assert result.probs[i] == pytest.approx(float(logits[pos].softmax(-1)[answer]), rel=1e-5)
    assert out.startswith(f"Tokenized prompt: {[str(int(t)) for t in toks[0, :6]]}\n")
    assert f"Ranks of the answer tokens: {list(zip(result.answer_tokens, result.ranks, strict=True))}" in out
    assert out.count("Top 0th token. Logit:") == 2
    assert result.figure().data[0].type == "table"


def test_patching_heatmaps(toks) -> None:
    values = torch.randn(3, 10, generator=torch.Generator().manual_seed(0))
    fig = viz.layer_pos_heatmap(values, toks[0].tolist(), metric_name="logit diff")
    heat = fig.data[0]
    np.testing.assert_allclose(np.asarray(heat.z), values.numpy(), rtol=1e-6)
    assert list(heat.y) == ["L0", "L1", "L2"] and heat.x[3] == f"3:{int(toks[0, 3])}"
    assert heat.zmid == 0 and heat.zmax == pytest.approx(float(values.abs().max()), rel=1e-6)
    heads = viz.layer_head_heatmap(torch.arange(6.0).view(2, 3) - 2)
    assert list(heads.data[0].x) == ["H0", "H1", "H2"] and heads.data[0].text[1][2] == "3"


def _colour_at(trace, value: float) -> str:
    """The colour plotly gives `value` on a heatmap trace: its position on [zmin, zmax] looked up in the stops."""
    at = (value - trace.zmin) / (trace.zmax - trace.zmin)
    return min(trace.colorscale, key=lambda stop: abs(stop[0] - at))[1]


def test_patching_convention_normalised_effect_zero_is_white() -> None:
    """One convention everywhere: (patched - corrupted) / (clean - corrupted), 0 white, 1 (clean) blue."""
    lab_js = (Path(viz.__file__).parents[1] / "web" / "static" / "lab.js").read_text()
    clean, corrupted = 3.0, -1.0
    raw = torch.tensor([[-1.0, 3.0, 1.0], [-1.0, -1.0, 7.0]])  # corrupted, clean, halfway; overshoot to 2
    for fig in (
        viz.layer_pos_heatmap(raw, clean=clean, corrupted=corrupted, metric_name="logit diff"),
        viz.layer_head_heatmap(raw, clean=clean, corrupted=corrupted, metric_name="logit diff"),
    ):
        heat = fig.data[0]
        np.testing.assert_allclose(np.asarray(heat.z), [[0.0, 1.0, 0.5], [0.0, 0.0, 2.0]])
        np.testing.assert_allclose(np.asarray(heat.customdata), raw.numpy())  # raw values on hover
        assert heat.zmin == -heat.zmax and heat.zmax == 2.0 and "logit diff %{customdata" in heat.hovertemplate
        assert _colour_at(heat, 0.0) == "rgb(255,255,255)"  # no effect: white
        r, g, b = (int(c) for c in _colour_at(heat, 1.0)[4:-1].split(","))
        assert b > r and b > g  # the clean behaviour: blue
    small = viz.layer_head_heatmap(torch.tensor([[0.0, 0.2]]), clean=1.0, corrupted=0.0)
    assert small.data[0].zmax == 1.0  # the scale always reaches the clean behaviour
    same = viz.layer_pos_heatmap(raw, clean=1.0, corrupted=1.0)  # nothing to normalise by: raw values
    np.testing.assert_allclose(np.asarray(same.data[0].z), raw.numpy())
    assert viz.normalise_effect(raw, 1.0, 1.0) is None
    import plotly.colors

    assert [c for _, c in viz.SEQUENTIAL] == plotly.colors.sequential.Blues  # plotly.py's Blues, white at 0
    assert lab_js.count("colorscale: data.colorscale") == 2  # attention and patching: the server's stops
    # the web lab draws with the same stops (plotly.js's "RdBu" would run the other way)
    assert (
        viz.DIVERGING[5] == [0.5, "rgb(255,255,255)"]
        and "colorscale: data.colorscale" in (Path(viz.__file__).parents[1] / "web" / "static" / "lab.js").read_text()
    )


def test_composition_scale_is_shared_and_anchored_at_the_baseline(model) -> None:
    comps = {kind: composition_scores(model, kind).detach() for kind in "QKV"}
    top = viz.composition_zmax(*comps.values())
    figs = [viz.composition_matrix(comps[k], k, baseline=0.2, zmax=top) for k in "QKV"]
    assert {f.data[0].zmax for f in figs} == {top} and {f.data[0].zmin for f in figs} == {0.2}
    assert top == pytest.approx(max(float(c[:-1, :, 1:].max()) for c in comps.values()))
    heat = figs[1].data[0]
    assert heat.colorscale[0][1] in ("rgb(247,251,255)", "#f7fbff")  # white at (and below) the baseline
    np.testing.assert_allclose(np.asarray(heat.customdata), np.asarray(heat.z) / 0.2)  # x baseline on hover


def test_qk_circuit_masked_causally_and_shown_per_row() -> None:
    qk = torch.tensor([[1.0, 5.0, 9.0], [0.0, 2.0, 9.0], [1.0, 3.0, 0.0]])  # [query, key]
    soft = viz.circuit_matrix(qk, causal=True, rows="softmax", scale=2.0).data[0]
    z = np.asarray(soft.z, dtype=float)
    assert np.isnan(z[0, 1]) and np.isnan(z[0, 2]) and np.isnan(z[1, 2])  # keys after the query blanked
    np.testing.assert_allclose(np.nansum(z, axis=1), 1.0)
    np.testing.assert_allclose(z[1, :2], torch.tensor([0.0, 1.0]).softmax(0).numpy())  # softmax of row / scale
    assert (soft.zmin, soft.zmax) == (0.0, 1.0)
    centred = np.asarray(viz.circuit_matrix(qk, causal=True, rows="centre").data[0].z, dtype=float)
    np.testing.assert_allclose(centred[2], np.array([1.0, 3.0, 0.0]) - 4.0 / 3)  # minus the row mean
    with pytest.raises(ValueError, match="'softmax' or 'centre'"):
        viz.circuit_matrix(qk, rows="max")


def test_score_and_circuit_matrices(model) -> None:
    scores = head_scores(model, batch=4)
    grid = viz.head_scores_grid(scores, ["induction", "previous_token"])
    np.testing.assert_allclose(np.asarray(grid.data[0].z), scores.scores["induction"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grid.data[1].customdata), scores.baselines["previous_token"].numpy())
    with pytest.raises(ValueError, match="unknown scores"):
        viz.head_scores_grid(scores, ["nope"])
    every = viz.head_scores_grid(scores)  # 8 scores: two rows of four, as wide as a page at most
    assert len(every.data) == 8 and every.layout.width <= 1000
    assert every.data[4].xaxis == "x5" and every.layout.yaxis5.domain[1] < every.layout.yaxis.domain[0]

    k = composition_scores(model, "K")  # [L1, H1, L2, H2]
    comp = viz.composition_matrix(k, "K", baseline=0.1)
    assert list(comp.data[0].y) == ["L0H0", "L0H1", "L0H2"] and list(comp.data[0].x) == ["L1H0", "L1H1", "L1H2"]
    np.testing.assert_allclose(np.asarray(comp.data[0].z)[2, 1], float(k[0, 2, 1, 1].detach()), rtol=1e-6)
    assert "random baseline 0.100" in comp.layout.title.text

    ov = full_ov_circuit(model)[1, 0]
    fig = viz.circuit_matrix(ov, max_size=8)
    np.testing.assert_allclose(np.asarray(fig.data[0].z), ov.AB[:8, :8].detach().numpy(), rtol=1e-4, atol=1e-6)


def test_training_figures_from_metrics(tmp_path: Path) -> None:
    rows = [
        {"step": s, "eval_loss": 3 - s / 100, "train_loss": None if s == 0 else 3.2 - s / 100,
         "heads.induction.L1H0": s / 200, "heads.induction.L0H1": 0.1, "loss_per_position": [1.0, 2.0, s / 100]}
        for s in (0, 50, 100, 150, 200)
    ]  # fmt: skip
    loss = viz.loss_curves(rows, checkpoints=[0, 100])
    assert [t.name for t in loss.data] == ["eval loss", "train loss"] and list(loss.data[1].x) == [50, 100, 150, 200]
    assert sorted(s.x0 for s in loss.layout.shapes) == [0, 100]
    traj = viz.head_trajectories(rows, "induction", checkpoints=[100])
    assert [t.name for t in traj.data] == ["L0H1", "L1H0"] and list(traj.data[1].y) == [0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError, match=r"recorded head scores: \['induction'\]"):
        viz.head_trajectories(rows, "copying_eigen")
    per_pos = viz.loss_per_position(rows, steps=[200])
    assert list(per_pos.data[0].y) == [1.0, 2.0, 2.0]
    (tmp_path / "metrics.jsonl").write_text("\n".join(__import__("json").dumps(r) for r in rows[::-1]) + "\n")
    assert [r["step"] for r in viz.read_metrics(tmp_path)] == [0, 50, 100, 150, 200]


def test_logit_lens_views(model, toks) -> None:
    _, cache = model.run_with_cache(toks)
    answer = int(toks[0, 5])
    table = viz.logit_lens_table(cache, toks, pos=4, answer=answer, top_k=2)
    values, labels = logit_lens(cache, pos=4)
    cols = table.data[0].cells.values
    assert list(cols[0]) == labels
    probs = values[:, 0].softmax(-1)
    assert list(cols[3]) == [f"{float(p):.3f}" for p in probs[:, answer]]
    heat = viz.logit_lens_heatmap(cache, toks)
    z = np.asarray(heat.data[0].z)  # [component, pos - 1]: p(next token); the last row is the model's output
    np.testing.assert_allclose(z[-1, 4], float(model(toks)[0, 4].detach().softmax(-1)[answer]), rtol=1e-4)
    assert list(heat.data[0].y) == labels


def test_save_png_writes_valid_images(model, toks, tmp_path: Path) -> None:
    from matplotlib.image import imread

    _, cache = model.run_with_cache(toks)
    figures = {
        "grid": viz.attention_grid(cache, toks[0].tolist(), title="grid"),
        "lines": viz.loss_curves([{"step": 0, "eval_loss": 2.0}, {"step": 10, "eval_loss": 1.0}], [10]),
        "table": viz.predictions_table(viz.token_predictions(model, toks[:1], top_k=2)),
    }
    for name, fig in figures.items():
        path = viz.save_png(fig, tmp_path / f"{name}.png", dpi=50)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = imread(path)
        # 100 px per inch at dpi 50, cropped to what was drawn (plus a pad): about the figure's size
        assert image.shape[0] == pytest.approx(fig.layout.height / 2, rel=0.2)
        assert image[..., :3].std() > 0.01  # something was drawn
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "lines.png", "table.png"]  # no temp files
    import plotly.graph_objects as go

    with pytest.raises(ValueError, match="not 'bar'"):
        viz.save_png(go.Figure(go.Bar(x=[1], y=[2])), tmp_path / "bar.png")
    assert not (tmp_path / "bar.png").exists()


def test_interactive_views_carry_their_data_and_script(model, toks) -> None:
    _, cache = model.run_with_cache(toks)
    view = viz.attention_heads(cache, toks[0].tolist(), layer=1, batch_index=1)
    data = view.data
    assert data["head_names"] == ["L1H0", "L1H1", "L1H2"] and len(data["tokens"]) == toks.shape[1]
    np.testing.assert_allclose(data["patterns"], cache["pattern", 1][1].numpy(), atol=5e-4)
    fragment = view._repr_html_()
    assert f'id="{view.element_id}"' in fragment and "circuitlabViews" in fragment and "http" not in fragment
    with pytest.raises(ValueError, match="got 3 tokens for patterns of 10 queries x 10 keys"):
        viz.attention_heads(torch.zeros(2, 10, 10), ["a", "b", "c"])
    evil = viz.token_values(["</script><b>", "x"], [1.0, float("nan")])
    assert "</script><b>" not in evil.html() and evil.data["values"] == [1.0, None]
    losses = viz.token_losses(model, toks[0])
    log_probs = model(toks[:1])[0].detach().log_softmax(-1)
    assert losses.data["values"][0] is None
    assert losses.data["values"][3] == pytest.approx(-float(log_probs[2, toks[0, 3]]), rel=1e-5)


def _ink(pixels: np.ndarray, colour: tuple[float, float, float], rows: range, col: int) -> float:
    """How many pixels of `colour` (over white) the column `col` holds in `rows`, antialiased edges counted by
    their coverage: the line's vertical thickness in pixels. Pixels of another colour are left out."""
    dark = 255 - np.asarray(colour) * 255  # [3]: how far the colour is from white
    cells = 255 - pixels[list(rows), col].astype(float)  # [row, 3]
    cover = cells @ dark / (dark @ dark)  # [row]: the share of `colour` that best explains each pixel
    same_hue = np.linalg.norm(cells - cover[:, None] * dark, axis=1) < 20
    return float(np.clip(cover, 0, 1)[same_hue].sum())


def test_png_draws_the_circuit_graph_as_shown() -> None:
    """The PNG of a circuit has the interactive figure's line widths (a wide edge is as thick as its Plotly
    width, a thin one thin), colours, node labels, layer ticks and legend, and no y axis."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import to_rgb

    from circuitlab.analysis.discovery import Circuit, edge_attribution
    from circuitlab.compiled import induction

    p = induction(batch=4, chunk=5)
    fig = viz.circuit_graph(Circuit.from_edges(p.graph, p.true_edges, edge_attribution(
        p.model, p.clean, p.corrupted, p.metric)))  # fmt: skip
    image = viz.render(fig, dpi=100)  # 100 dpi: one Plotly px is one pixel
    canvas = FigureCanvasAgg(image)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3]
    ax = image.axes[0]
    lines = sorted((t for t in fig.data if t.mode == "lines"), key=lambda t: t.line.width)
    assert lines[-1].line.width > 4 * lines[0].line.width
    for trace in (lines[0], lines[-1]):
        (x0, y0), (x1, y1) = ax.transData.transform(list(zip(trace.x, trace.y, strict=True)))
        slope = (y1 - y0) / (x1 - x0)
        expected = trace.line.width * (1 + slope**2) ** 0.5  # vertical thickness of a sloped line
        colour = tuple(trace.opacity * c + (1 - trace.opacity) for c in to_rgb(trace.line.color))  # over white
        measured = []
        for t in (0.3, 0.5, 0.7):
            col, row = x0 + t * (x1 - x0), pixels.shape[0] - (y0 + t * (y1 - y0))  # image rows run downwards
            measured.append(_ink(pixels, colour, range(int(row) - 20, int(row) + 21), int(col)))
        assert np.median(measured) == pytest.approx(expected, abs=1.0, rel=0.2), trace.hovertext
    texts = {t.get_text() for t in ax.texts}
    assert {*p.graph.senders, "logits"} <= texts  # every node's label
    assert [t.get_text() for t in ax.get_xticklabels()] == list(fig.layout.xaxis.ticktext)
    assert not ax.yaxis.get_visible()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(legend) == sorted({t.name for t in lines})  # one entry per kind of input, not per edge


def test_png_colour_bars_and_titles(tmp_path: Path) -> None:
    """Colour-bar titles are drawn and wrapped titles keep their words (Plotly's <br> becomes a line break)."""
    fig = viz.layer_head_heatmap(torch.ones(2, 3), title="a long title " * 8, clean=1.0, corrupted=0.0)
    image = viz.render(fig)
    bars = [ax for ax in image.axes if ax.get_label() == "<colorbar>"]
    assert [ax.get_title(loc="left") for ax in bars] == ["normalised (1 = clean)"]
    assert image._suptitle.get_text().split() == ("a long title " * 8).split()
