"""Patching heatmaps: layer x position (residual stream, with the tokens) and layer x head.

One convention in every view (these figures, the CLI, the report, the web lab, the PNGs): given the clean and
corrupted runs' metric, a cell shows the normalised effect (patched - corrupted) / (clean - corrupted) on a
diverging scale with 0 (the corrupted behaviour, no effect of a denoising patch) white and 1 (the clean
behaviour) blue; the raw metric is on hover and in the JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._common import DIVERGING, check_ndim, go, layout, to_numpy, token_labels


def _symmetric(values: np.ndarray, at_least: float = 0.0) -> float:
    finite = np.abs(values[np.isfinite(values)])
    bound = float(finite.max()) if finite.size else 0.0
    return max(bound, at_least) or 1.0


def normalise_effect(values: Any, clean: float, corrupted: float) -> np.ndarray | None:
    """(values - corrupted) / (clean - corrupted): 0 = the corrupted run's metric, 1 = the clean run's.
    None when the two runs' metrics are (nearly) equal, so the normalisation would divide by ~0."""
    spread = float(clean) - float(corrupted)
    if abs(spread) < 1e-6 * max(1.0, abs(float(clean))):
        return None
    return (to_numpy(values) - float(corrupted)) / spread


def _scale(
    z: np.ndarray, clean: float | None, corrupted: float | None, metric_name: str
) -> tuple[np.ndarray, np.ndarray | None, float, str, str]:
    """(shown values, raw values for hover or None, colour bound, colourbar title, hover line)."""
    if clean is not None and corrupted is not None:
        norm = normalise_effect(z, clean, corrupted)
        if norm is not None:
            hover = f"normalised effect %{{z:.3f}}<br>{metric_name} %{{customdata:.4g}}"
            return norm, z, _symmetric(norm, at_least=1.0), "normalised (1 = clean)", hover
    return z, None, _symmetric(z), metric_name, f"{metric_name} %{{z:.4g}}"


def layer_pos_heatmap(
    values: Any,
    tokens: Sequence[Any] | None = None,
    title: str | None = None,
    metric_name: str = "metric",
    layer_labels: Sequence[str] | None = None,
    clean: float | None = None,
    corrupted: float | None = None,
) -> Any:
    """values [layer, pos] (e.g. `patch_resid_pre`): one row per layer, one column per token. With the clean
    and corrupted runs' metric, cells show the normalised effect (module docstring), raw values on hover."""
    raw = check_ndim(to_numpy(values), 2, "values", "[layer, pos]")
    rows = list(layer_labels) if layer_labels is not None else [f"L{l}" for l in range(raw.shape[0])]
    if len(rows) != raw.shape[0]:
        raise ValueError(f"got {len(rows)} layer labels for {raw.shape[0]} rows")
    z, custom, bound, bar, hover = _scale(raw, clean, corrupted, metric_name)
    fig = go().Figure(
        go().Heatmap(
            z=z,
            x=token_labels(tokens, z.shape[1]),
            y=rows,
            zmid=0.0,
            zmin=-bound,
            zmax=bound,
            colorscale=DIVERGING,
            colorbar_title=bar,
            customdata=custom,
            hovertemplate=f"%{{y}}, pos:token %{{x}}<br>{hover}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="position", tickangle=-45)
    fig.update_yaxes(title_text="layer", autorange="reversed")
    return layout(fig, title, width=max(640, 160 + 28 * z.shape[1]), height=max(300, 140 + 30 * z.shape[0]))


def layer_head_heatmap(
    values: Any,
    title: str | None = None,
    metric_name: str = "metric",
    clean: float | None = None,
    corrupted: float | None = None,
) -> Any:
    """values [layer, head] (e.g. `patch_head_out_all_pos`), with each cell's value written in it; normalised
    like `layer_pos_heatmap` when the clean and corrupted metrics are given."""
    raw = check_ndim(to_numpy(values), 2, "values", "[layer, head]")
    z, custom, bound, bar, hover = _scale(raw, clean, corrupted, metric_name)
    fig = go().Figure(
        go().Heatmap(
            z=z,
            x=[f"H{h}" for h in range(z.shape[1])],
            y=[f"L{l}" for l in range(z.shape[0])],
            zmid=0.0,
            zmin=-bound,
            zmax=bound,
            colorscale=DIVERGING,
            colorbar_title=bar,
            customdata=custom,
            text=np.vectorize(lambda v: f"{v:.2g}")(z) if z.size <= 400 else None,
            texttemplate="%{text}" if z.size <= 400 else None,
            hovertemplate=f"%{{y}}%{{x}}<br>{hover}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="head")
    fig.update_yaxes(title_text="layer", autorange="reversed")
    return layout(fig, title, width=max(420, 160 + 40 * z.shape[1]), height=max(300, 140 + 34 * z.shape[0]))
