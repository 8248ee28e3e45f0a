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


def head_scores_grid(scores: Any, names: Sequence[str] | None = None, title: str | None = None) -> Any:
    """Several scores of a `HeadScores` side by side, [layer, head] each; hover shows the baseline."""
    names = list(names or scores.scores)
    unknown = [n for n in names if n not in scores.scores]
    if unknown:
        raise ValueError(f"unknown scores {unknown}; available: {sorted(scores.scores)}")
    fig = subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.04)
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
            row=1,
            col=i + 1,
        )
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(coloraxis=dict(colorscale=SEQUENTIAL, cmin=0.0, cmax=1.0, colorbar_title="score"))
    n_layers = to_numpy(scores.scores[names[0]]).shape[0]
    return layout(fig, title, width=min(1400, 120 + 190 * len(names)), height=max(340, 160 + 30 * n_layers))


def composition_matrix(scores: Any, kind: str = "K", title: str | None = None, baseline: float | None = None) -> Any:
    """Composition scores [L1, H1, L2, H2] as a matrix: rows = writing heads, columns = reading heads.

    Only layers that can compose are shown: writers in layers 0..L-2, readers in layers 1..L-1.
    """
    s = check_ndim(to_numpy(scores), 4, "scores", "[layer, head, layer, head]")
    n_layers, n_heads = s.shape[:2]
    if n_layers < 2:
        raise ValueError("composition needs at least 2 layers")
    z = s[:-1, :, 1:, :].reshape((n_layers - 1) * n_heads, (n_layers - 1) * n_heads)
    rows = head_labels(n_layers, n_heads)[: (n_layers - 1) * n_heads]
    cols = head_labels(n_layers, n_heads)[n_heads:]
    text = np.vectorize(lambda v: f"{v:.2f}")(z) if z.size <= 400 else None
    fig = go().Figure(
        go().Heatmap(
            z=z,
            x=cols,
            y=rows,
            colorscale=SEQUENTIAL,
            zmin=0.0,
            text=text,
            texttemplate="%{text}" if text is not None else None,
            colorbar_title=f"{kind}-comp",
            hovertemplate=f"%{{y}} -> %{{x}}<br>{kind}-composition %{{z:.3f}}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", title_text="earlier head (writes)")
    fig.update_xaxes(title_text="later head (reads)")
    if baseline is not None:
        title = f"{title or f'{kind}-composition'} (random baseline {baseline:.3f})"
    side = 220 + 34 * len(rows)
    return layout(fig, title, width=side + 120, height=side)


def circuit_matrix(
    matrix: Any,
    title: str | None = None,
    row_tokens: Sequence[Any] | None = None,
    col_tokens: Sequence[Any] | None = None,
    max_size: int = 64,
    row_title: str = "source token",
    col_title: str = "output token",
) -> Any:
    """A full-circuit matrix [rows, cols] (a tensor, or a 2-d FactoredMatrix sliced before materialising),
    cut to the first `max_size` rows and columns; signed, centred on 0."""
    if hasattr(matrix, "A") and hasattr(matrix, "B"):
        z = to_numpy(matrix.A[..., :max_size, :] @ matrix.B[..., :, :max_size])
    else:
        z = to_numpy(matrix)[:max_size, :max_size]
    check_ndim(z, 2, "matrix", "[rows, cols]")
    bound = float(np.abs(z).max()) or 1.0
    row_labels = token_labels(list(row_tokens)[: z.shape[0]] if row_tokens is not None else None, z.shape[0])
    col_labels = token_labels(list(col_tokens)[: z.shape[1]] if col_tokens is not None else None, z.shape[1])
    fig = go().Figure(
        go().Heatmap(
            z=z,
            x=col_labels,
            y=row_labels,
            zmid=0.0,
            zmin=-bound,
            zmax=bound,
            colorscale=DIVERGING,
            hovertemplate=f"{row_title} %{{y}}<br>{col_title} %{{x}}<br>%{{z:.3g}}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", title_text=row_title)
    fig.update_xaxes(title_text=col_title)
    side = max(360, min(700, 200 + 8 * z.shape[0]))
    return layout(fig, title, width=side + 100, height=side)
