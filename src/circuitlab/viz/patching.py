"""Patching heatmaps: layer x position (residual stream, with the tokens) and layer x head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._common import DIVERGING, check_ndim, go, layout, to_numpy, token_labels


def _symmetric(values: np.ndarray) -> float:
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def layer_pos_heatmap(
    values: Any,
    tokens: Sequence[Any] | None = None,
    title: str | None = None,
    metric_name: str = "metric",
    layer_labels: Sequence[str] | None = None,
) -> Any:
    """values [layer, pos] (e.g. `patch_resid_pre`): one row per layer, one column per token."""
    z = check_ndim(to_numpy(values), 2, "values", "[layer, pos]")
    rows = list(layer_labels) if layer_labels is not None else [f"L{l}" for l in range(z.shape[0])]
    if len(rows) != z.shape[0]:
        raise ValueError(f"got {len(rows)} layer labels for {z.shape[0]} rows")
    bound = _symmetric(z)
    fig = go().Figure(
        go().Heatmap(
            z=z,
            x=token_labels(tokens, z.shape[1]),
            y=rows,
            zmid=0.0,
            zmin=-bound,
            zmax=bound,
            colorscale=DIVERGING,
            colorbar_title=metric_name,
            hovertemplate=f"%{{y}}, position %{{x}}<br>{metric_name} %{{z:.4g}}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="position", tickangle=-45)
    fig.update_yaxes(title_text="layer", autorange="reversed")
    return layout(fig, title, width=min(1400, max(640, 160 + 28 * z.shape[1])), height=max(300, 140 + 30 * z.shape[0]))


def layer_head_heatmap(values: Any, title: str | None = None, metric_name: str = "metric") -> Any:
    """values [layer, head] (e.g. `patch_head_out_all_pos`), with each cell's value written in it."""
    z = check_ndim(to_numpy(values), 2, "values", "[layer, head]")
    bound = _symmetric(z)
    fig = go().Figure(
        go().Heatmap(
            z=z,
            x=[f"H{h}" for h in range(z.shape[1])],
            y=[f"L{l}" for l in range(z.shape[0])],
            zmid=0.0,
            zmin=-bound,
            zmax=bound,
            colorscale=DIVERGING,
            colorbar_title=metric_name,
            text=np.vectorize(lambda v: f"{v:.2g}")(z) if z.size <= 400 else None,
            texttemplate="%{text}" if z.size <= 400 else None,
            hovertemplate=f"%{{y}}%{{x}}<br>{metric_name} %{{z:.4g}}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="head")
    fig.update_yaxes(title_text="layer", autorange="reversed")
    return layout(fig, title, width=max(420, 160 + 40 * z.shape[1]), height=max(300, 140 + 34 * z.shape[0]))
