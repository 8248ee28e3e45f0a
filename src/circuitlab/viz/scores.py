"""Head-score matrices (with baselines), composition scores between heads, and full-circuit matrices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._common import DIVERGING, SEQUENTIAL, check_ndim, go, head_labels, layout, subplots, to_numpy, token_labels


def head_score_matrix(values: Any, title: str | None = None, baseline: Any = None, name: str = "score") -> Any:
    """One score [layer, head] as a heatmap with the value in each cell (and its baseline on hover)."""
    z = check_ndim(to_numpy(values), 2, "values", "[layer, head]")
    base = None if baseline is None else np.broadcast_to(to_numpy(baseline), z.shape)
    text = np.vectorize(lambda v: f"{v:.2f}")(z)
    hover = f"%{{y}}%{{x}}<br>{name} %{{z:.3f}}"
    fig = go().Figure(
        go().Heatmap(
            z=z,
            x=[f"H{h}" for h in range(z.shape[1])],
            y=[f"L{l}" for l in range(z.shape[0])],
            colorscale=SEQUENTIAL,
            zmin=min(0.0, float(z.min())),
            zmax=max(1.0, float(z.max())),
            text=text,
            texttemplate="%{text}",
            customdata=base,
            hovertemplate=hover + ("<br>baseline %{customdata:.3f}" if base is not None else "") + "<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", title_text="layer")
    fig.update_xaxes(title_text="head")
    return layout(fig, title, width=max(380, 160 + 45 * z.shape[1]), height=max(280, 140 + 36 * z.shape[0]))


def head_scores_grid(
    scores: Any, names: Sequence[str] | None = None, title: str | None = None, per_row: int = 4
) -> Any:
    """Several scores of a `HeadScores`, [layer, head] each, `per_row` to a row (so the grid fits a page);
    hover shows the baseline."""
    names = list(names or scores.scores)
    unknown = [n for n in names if n not in scores.scores]
    if unknown:
        raise ValueError(f"unknown scores {unknown}; available: {sorted(scores.scores)}")
    n_cols = min(per_row, len(names))
    n_rows = -(-len(names) // n_cols)
    n_layers = to_numpy(scores.scores[names[0]]).shape[0]
    fig = subplots(
        rows=n_rows, cols=n_cols, subplot_titles=names, horizontal_spacing=0.05, vertical_spacing=0.3 / n_rows
    )
    for i, name in enumerate(names):
        z = to_numpy(scores.scores[name])
        base = np.broadcast_to(to_numpy(scores.baselines[name]), z.shape)
        fig.add_trace(
            go().Heatmap(
                z=z,
                x=[f"H{h}" for h in range(z.shape[1])],
                y=[f"L{l}" for l in range(z.shape[0])],
                coloraxis="coloraxis",
                customdata=base,
                name=name,
                hovertemplate=f"{name} %{{y}}%{{x}}: %{{z:.3f}}<br>baseline %{{customdata:.3f}}<extra></extra>",
            ),
            row=i // n_cols + 1,
            col=i % n_cols + 1,
        )
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(coloraxis=dict(colorscale=SEQUENTIAL, cmin=0.0, cmax=1.0, colorbar_title="score"))
    height = n_rows * max(200, 90 + 26 * n_layers) + 100
    return layout(fig, title, width=160 + 210 * n_cols, height=height)


def composition_matrix(
    scores: Any, kind: str = "K", title: str | None = None, baseline: float | None = None, zmax: float | None = None
) -> Any:
    """Composition scores [L1, H1, L2, H2] as a matrix: rows = writing heads, columns = reading heads.

    Only layers that can compose are shown: writers in layers 0..L-2, readers in layers 1..L-1. The colour
    scale starts (white) at the random `baseline`, so a score at or below what random matrices give shows no
    colour; pass the same `zmax` to the Q, K and V figures (`composition_zmax`) so equal colours mean equal
    scores across them.
    """
    s = check_ndim(to_numpy(scores), 4, "scores", "[layer, head, layer, head]")
    n_layers, n_heads = s.shape[:2]
    if n_layers < 2:
        raise ValueError("composition needs at least 2 layers")
    z = s[:-1, :, 1:, :].reshape((n_layers - 1) * n_heads, (n_layers - 1) * n_heads)
    rows = head_labels(n_layers, n_heads)[: (n_layers - 1) * n_heads]
    cols = head_labels(n_layers, n_heads)[n_heads:]
    text = np.vectorize(lambda v: f"{v:.2f}")(z) if z.size <= 400 else None
    zmin = 0.0 if baseline is None else float(baseline)
    top = float(zmax) if zmax is not None else max(float(np.nanmax(z)), zmin)
    ratio = "" if not baseline else "<br>%{customdata:.2f} x the random baseline"
    fig = go().Figure(
        go().Heatmap(
            z=z,
            x=cols,
            y=rows,
            colorscale=SEQUENTIAL,
            zmin=zmin,
            zmax=top if top > zmin else zmin + 1e-6,
            text=text,
            texttemplate="%{text}" if text is not None else None,
            customdata=z / baseline if baseline else None,
            colorbar_title=f"{kind}-comp",
            hovertemplate=f"%{{y}} -> %{{x}}<br>{kind}-composition %{{z:.3f}}{ratio}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", title_text="earlier head (writes)")
    fig.update_xaxes(title_text="later head (reads)")
    if baseline is not None:
        title = f"{title or f'{kind}-composition'} (random baseline {baseline:.3f}: white)"
    side = 220 + 34 * len(rows)
    return layout(fig, title, width=side + 140, height=side)


def composition_zmax(*scores: Any) -> float:
    """The largest composition score between composable heads over several [L1, H1, L2, H2] tensors (e.g.
    Q, K and V): one colour scale for all of them."""
    return max(float(np.nanmax(to_numpy(s)[:-1, :, 1:, :])) for s in scores)


def circuit_matrix(
    matrix: Any,
    title: str | None = None,
    row_tokens: Sequence[Any] | None = None,
    col_tokens: Sequence[Any] | None = None,
    max_size: int = 64,
    row_title: str = "source token",
    col_title: str = "output token",
    causal: bool = False,
    rows: str | None = None,
    scale: float = 1.0,
) -> Any:
    """A full-circuit matrix [rows, cols] (a tensor, or a 2-d FactoredMatrix sliced before materialising),
    cut to the first `max_size` rows and columns; signed, centred on 0 (white).

    For QK circuits (rows = queries, columns = keys): `causal=True` blanks the keys after each query (a causal
    model never reads them); `rows="softmax"` shows each row as the attention it would produce,
    softmax(row / `scale`) over the visible keys (pass the model's attn_scale), on a 0..1 scale, and
    `rows="centre"` subtracts each row's mean over its visible keys (attention is unchanged by a per-row
    constant, so only the differences within a row are meaningful).
    """
    if hasattr(matrix, "A") and hasattr(matrix, "B"):
        z = to_numpy(matrix.A[..., :max_size, :] @ matrix.B[..., :, :max_size])
    else:
        z = to_numpy(matrix)[:max_size, :max_size]
    check_ndim(z, 2, "matrix", "[rows, cols]")
    visible = np.ones(z.shape, dtype=bool)
    if causal:
        visible = np.arange(z.shape[1])[None, :] <= np.arange(z.shape[0])[:, None]  # [query, key]
    colorscale, zmid, what = DIVERGING, 0.0, "%{z:.3g}"
    if rows == "softmax":
        logits = np.where(visible, z / scale, -np.inf)
        logits = logits - logits.max(axis=1, keepdims=True)
        z = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        colorscale, zmid, what = SEQUENTIAL, None, "attention %{z:.3f}"
    elif rows == "centre":
        mean = np.where(visible, z, 0.0).sum(axis=1, keepdims=True) / np.maximum(visible.sum(axis=1, keepdims=True), 1)
        z = z - mean
    elif rows is not None:
        raise ValueError(f"rows={rows!r} is invalid: expected None, 'softmax' or 'centre'")
    z = np.where(visible, z, np.nan)  # blank cells, not zeros
    bound = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    row_labels = token_labels(list(row_tokens)[: z.shape[0]] if row_tokens is not None else None, z.shape[0])
    col_labels = token_labels(list(col_tokens)[: z.shape[1]] if col_tokens is not None else None, z.shape[1])
    limits = dict(zmin=0.0, zmax=1.0) if zmid is None else dict(zmid=zmid, zmin=-(bound or 1.0), zmax=bound or 1.0)
    fig = go().Figure(
        go().Heatmap(
            z=z,
            x=col_labels,
            y=row_labels,
            colorscale=colorscale,
            hoverongaps=False,
            hovertemplate=f"{row_title} %{{y}}<br>{col_title} %{{x}}<br>{what}<extra></extra>",
            **limits,
        )
    )
    fig.update_yaxes(autorange="reversed", title_text=row_title)
    fig.update_xaxes(title_text=col_title)
    side = max(360, min(700, 200 + 8 * z.shape[0]))
    return layout(fig, title, width=side + 100, height=side)
