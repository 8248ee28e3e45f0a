"""Attention patterns: one head, or a grid of every head, with the tokens on both axes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._common import MAX_WIDTH, SEQUENTIAL, check_ndim, go, layout, subplots, tick_axis, to_numpy, token_labels

_HOVER = "query (pos:token) %{y}<br>key (pos:token) %{x}<br>attention %{z:.3f}<extra></extra>"


def patterns_from_cache(cache: Any, batch_index: int = 0) -> np.ndarray:
    """Every head's pattern for one sequence of a cache: [layer, head, query, key]."""
    n_layers = cache.model.cfg.n_layers
    return np.stack([to_numpy(cache["pattern", l][batch_index]) for l in range(n_layers)])


def attention_pattern(
    pattern: Any, tokens: Sequence[Any] | None = None, title: str | None = None, zmax: float = 1.0
) -> Any:
    """One head's pattern [query, key]: rows are queries (top to bottom), columns the keys they read."""
    values = check_ndim(to_numpy(pattern), 2, "pattern", "[query, key]")
    q_labels = token_labels(tokens, values.shape[0])
    k_labels = token_labels(tokens, values.shape[1]) if values.shape[0] == values.shape[1] else None
    heat = go().Heatmap(
        z=values,
        x=k_labels or [str(i) for i in range(values.shape[1])],
        y=q_labels,
        zmin=0.0,
        zmax=zmax,
        colorscale=SEQUENTIAL,
        hovertemplate=_HOVER,
    )
    fig = go().Figure(heat)
    fig.update_yaxes(autorange="reversed", title_text="query", **tick_axis(q_labels))
    fig.update_xaxes(title_text="key", tickangle=-60, **tick_axis(list(heat.x)))
    side = min(MAX_WIDTH - 100, 250 + 12 * values.shape[0])  # square cells, the colour bar beside them
    return layout(fig, title, width=side + 100, height=side)


def attention_grid(
    patterns: Any,
    tokens: Sequence[Any] | None = None,
    title: str | None = None,
    batch_index: int = 0,
    zmax: float = 1.0,
) -> Any:
    """All heads' patterns in a grid (rows: layers, columns: heads), one shared colour scale.

    patterns: [layer, head, query, key] for one sequence, or an ActivationCache (sequence `batch_index`).
    """
    values = patterns_from_cache(patterns, batch_index) if hasattr(patterns, "model") else to_numpy(patterns)
    check_ndim(values, 4, "patterns", "[layer, head, query, key]")
    n_layers, n_heads, n_q, n_k = values.shape
    q_labels, k_labels = token_labels(tokens, n_q), token_labels(tokens, n_k) if n_q == n_k else None
    fig = subplots(
        rows=n_layers,
        cols=n_heads,
        subplot_titles=[f"L{l}H{h}" for l in range(n_layers) for h in range(n_heads)],
        horizontal_spacing=0.04 if n_heads < 8 else 0.01,
        vertical_spacing=0.08 if n_layers < 6 else 0.02,
    )
    for l in range(n_layers):
        for h in range(n_heads):
            fig.add_trace(
                go().Heatmap(
                    z=values[l, h],
                    x=k_labels or [str(i) for i in range(n_k)],
                    y=q_labels,
                    coloraxis="coloraxis",
                    name=f"L{l}H{h}",
                    hovertemplate=f"L{l}H{h}<br>{_HOVER}",
                ),
                row=l + 1,
                col=h + 1,
            )
    keys = k_labels or [str(i) for i in range(n_k)]
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    # token labels on the outer edge of the grid (every k-th one past 32 positions; hovers name every cell)
    cell = max(60, min(320, max(160, 8 * n_q), (MAX_WIDTH - 160) // n_heads))  # square panels within MAX_WIDTH
    ticks = max(4, min(32, cell // 11))  # labels at least ~11 px apart
    fig.update_yaxes(showticklabels=True, col=1, **tick_axis(q_labels, max_ticks=ticks))
    fig.update_xaxes(
        showticklabels=True, row=n_layers, tickangle=-90 if n_k > 16 else -60, **tick_axis(keys, max_ticks=ticks)
    )
    fig.update_yaxes(title_text="query", col=1, row=(n_layers + 1) // 2)
    fig.update_xaxes(title_text="key", row=n_layers, col=(n_heads + 1) // 2)
    fig.update_layout(coloraxis=dict(colorscale=SEQUENTIAL, cmin=0.0, cmax=zmax, colorbar_title="attention"))
    return layout(fig, title, width=cell * n_heads + 160, height=cell * n_layers + 120)
