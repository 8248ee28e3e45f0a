"""Shared helpers for the figure modules: arrays from tensors, token labels, the default layout."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np

# Signed values (patching, circuits), centred on 0: red below, pure white at 0, blue above (ColorBrewer RdBu
# with its centre set to white). Spelt out as stops, not the name "RdBu": plotly.js's "RdBu" runs the opposite
# way to plotly.py's, and the web lab draws with this same list (sent in its JSON), so a colour means the
# same thing in every view.
DIVERGING: list[list[Any]] = [
    [0.0, "rgb(103,0,31)"],
    [0.1, "rgb(178,24,43)"],
    [0.2, "rgb(214,96,77)"],
    [0.3, "rgb(244,165,130)"],
    [0.4, "rgb(253,219,199)"],
    [0.5, "rgb(255,255,255)"],
    [0.6, "rgb(209,229,240)"],
    [0.7, "rgb(146,197,222)"],
    [0.8, "rgb(67,147,195)"],
    [0.9, "rgb(33,102,172)"],
    [1.0, "rgb(5,48,97)"],
]
# Values in [0, 1] (attention, head scores): ColorBrewer Blues, white at 0, as stops for the same reason.
_BLUES = ["247,251,255", "222,235,247", "198,219,239", "158,202,225", "107,174,214", "66,146,198", "33,113,181"]
SEQUENTIAL: list[list[Any]] = [[i / 8, f"rgb({c})"] for i, c in enumerate([*_BLUES, "8,81,156", "8,48,107"])]


def pos_label(i: int, token: Any) -> str:
    """The one label of a position everywhere (axes, hovers, tables): "pos:token"."""
    return f"{i}:{token}"


def to_numpy(x: Any) -> np.ndarray:
    """A float64 NumPy array from a tensor (any device / dtype, detached), array or nested list."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def check_ndim(x: np.ndarray, ndim: int, what: str, dims: str) -> np.ndarray:
    if x.ndim != ndim:
        raise ValueError(f"{what} must be {ndim}-dimensional {dims}, got shape {tuple(x.shape)}")
    return x


def token_labels(tokens: Sequence[Any] | None, n: int) -> list[str]:
    """Unique axis labels "i:token" (Plotly merges equal category labels, so the position is kept)."""
    if tokens is None:
        return [str(i) for i in range(n)]
    tokens = [str(int(t)) if hasattr(t, "item") else str(t) for t in tokens]
    if len(tokens) != n:
        raise ValueError(f"got {len(tokens)} token labels for {n} positions")
    return [pos_label(i, t) for i, t in enumerate(tokens)]


def tick_axis(labels: Sequence[str], max_ticks: int = 64) -> dict[str, Any]:
    """Axis settings that show every label up to `max_ticks` (smaller font as they get dense, rotated), else
    every k-th one; hovers always name every cell."""
    n = len(labels)
    step = max(1, -(-n // max_ticks))
    shown = -(-n // step)
    size = 11 if shown <= 16 else 9 if shown <= 32 else 7
    return dict(
        tickmode="array",
        tickvals=list(labels[::step]),
        ticktext=list(labels[::step]),
        tickfont_size=size,
        automargin=True,
    )


def head_labels(n_layers: int, n_heads: int) -> list[str]:
    """L0H0, L0H1, ... in (layer, head) order."""
    return [f"L{l}H{h}" for l in range(n_layers) for h in range(n_heads)]


def go() -> Any:
    """plotly.graph_objects, imported on first use (keeps `import circuitlab.viz` light)."""
    import plotly.graph_objects as graph_objects

    return graph_objects


def subplots(**kwargs: Any) -> Any:
    from plotly.subplots import make_subplots

    return make_subplots(**kwargs)


# Every figure fits a notebook cell or the report page (content ~1000 px wide) without a horizontal scrollbar.
MAX_WIDTH = 900
_TITLE_PX = 17  # plotly's default title font size
_TITLE_TOP = 34  # px from the top of the figure to the title: the toolbar (modebar, ~28 px) sits above it


def wrap_title(title: str, width: int) -> list[str]:
    """The title's lines so that each fits `width` px (about 0.55 font sizes per character)."""
    chars = max(20, int((width - 60) / (0.55 * _TITLE_PX)))
    return textwrap.wrap(title, chars, break_long_words=False) or [title]


def layout(fig: Any, title: str | None, **kwargs: Any) -> Any:
    """The white theme, a width of at most MAX_WIDTH, and the title in a band of its own below the toolbar,
    wrapped to the figure's width (room is made for every line)."""
    if kwargs.get("width") is not None:
        kwargs["width"] = min(int(kwargs["width"]), MAX_WIDTH)
    width = kwargs.get("width") or fig.layout.width or MAX_WIDTH
    height = kwargs.get("height") or fig.layout.height or 450
    margin = dict(l=60, r=30, t=30, b=50) | kwargs.pop("margin", {})
    heading: dict[str, Any] | None = None
    if title:
        lines = wrap_title(title, width)
        subplot_titles = 18 if fig.layout.annotations else 0  # they sit just above the top row
        top = max(margin["t"], _TITLE_TOP + 22 * len(lines) + 12 + subplot_titles)
        height += max(0, top - 60)  # the figures' heights leave 60 px for a title: the plot keeps its size
        margin["t"] = top
        # Plotly anchors a multi-line title by its first line (the others flow below): that line's bottom,
        # 15 px below its top at _TITLE_TOP (measured in Chromium).
        first = _TITLE_TOP + 15
        heading = dict(text="<br>".join(lines), x=0.02, xanchor="left", y=1 - first / height, yanchor="bottom",
                       yref="container", font_size=_TITLE_PX)  # fmt: skip
        kwargs["height"] = height  # the title's place is a fraction of the height: fix it
    # Colour-bar titles beside the bar, turned: above it they collide with the top tick label.
    for trace in fig.data:
        if trace.type == "heatmap" and trace.colorbar.title.text:
            trace.colorbar.title.side = "right"
    if fig.layout.coloraxis.colorbar.title.text:
        fig.layout.coloraxis.colorbar.title.side = "right"
    # White background set directly: a named template is deep-copied into every figure (slow).
    fig.update_layout(title=heading, plot_bgcolor="white", margin=margin, **kwargs)
    fig.update_xaxes(gridcolor="#eee", zerolinecolor="#ccc")
    fig.update_yaxes(gridcolor="#eee", zerolinecolor="#ccc")
    return fig
