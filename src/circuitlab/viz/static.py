"""Static PNG for papers: the Plotly figures of circuitlab.viz redrawn with matplotlib (Agg, no display,
no kaleido or browser). Heatmaps (also in subplot grids, with a shared colour axis, colour-bar titles),
line/marker scatters (line widths, colours, opacity, marker sizes and colours, text labels), vertical
marker lines and tables are drawn; other trace types raise an error. Hover-only text is not drawn. The
image is cropped to what was drawn plus a small pad (`bbox_inches="tight"`), so no label is cut off.

Sizes: a Plotly figure of W x H px becomes W/100 x H/100 inches, so one Plotly px is 0.72 pt."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write

_MARGIN_PX = dict(left=80, right=110, bottom=70, top_title=75, top=30)  # around the plotting area
_PT_PER_PX = 0.72  # figure inches = Plotly px / 100; 72 pt per inch


def _rgb(color: str) -> tuple[float, float, float]:
    m = re.fullmatch(r"rgba?\(([^)]*)\)", color.replace(" ", ""))
    if m:
        r, g, b = (float(v) for v in m.group(1).split(",")[:3])
        return r / 255, g / 255, b / 255
    from matplotlib.colors import to_rgb

    return to_rgb(color)


def _cmap(colorscale: Any) -> Any:
    """A matplotlib colormap from a Plotly colorscale ((position, colour) pairs, or a name)."""
    from matplotlib.colors import LinearSegmentedColormap

    if colorscale is None:
        colorscale = "Plasma"
    if isinstance(colorscale, str):
        import plotly.graph_objects as go

        colorscale = go.Heatmap(colorscale=colorscale).colorscale
    return LinearSegmentedColormap.from_list("plotly", [(float(p), _rgb(c)) for p, c in colorscale])


def _axis_name(ref: str | None, letter: str) -> str:
    ref = ref or letter
    return f"{letter}axis{ref[1:]}"


def _layout_axis(layout: Any, name: str) -> Any:
    """layout.xaxis2 etc., or None where the figure has no such axis (Plotly layouts have no .get)."""
    return layout[name] if name in layout else None  # noqa: SIM401


def _domain(layout: Any, name: str) -> tuple[float, float]:
    axis = _layout_axis(layout, name)
    dom = axis.domain if axis is not None and axis.domain is not None else (0.0, 1.0)
    return float(dom[0]), float(dom[1])


def _area(width_px: float, height_px: float, title: bool, label_chars: int) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of the plotting area, in figure fractions (room for y labels of
    `label_chars` characters)."""
    m = _MARGIN_PX
    top = m["top_title"] if title else m["top"]
    return (
        max(m["left"], 6 * label_chars + 40) / width_px,
        m["bottom"] / height_px,
        1 - m["right"] / width_px,
        1 - top / height_px,
    )


def _place(area: tuple[float, float, float, float], x_dom: tuple[float, float], y_dom: tuple[float, float]):
    left, bottom, right, top = area
    w, h = right - left, top - bottom
    return [left + x_dom[0] * w, bottom + y_dom[0] * h, (x_dom[1] - x_dom[0]) * w, (y_dom[1] - y_dom[0]) * h]


def _labels(values: Any, n: int) -> list[str]:
    return [str(v) for v in values] if values is not None else [str(i) for i in range(n)]


def _heatmap(ax: Any, trace: Any, layout: Any, reversed_y: bool) -> Any:
    z = np.asarray(trace.z, dtype=np.float64)
    if trace.coloraxis:
        caxis = layout[trace.coloraxis]
        cmap, vmin, vmax = _cmap(caxis.colorscale), caxis.cmin, caxis.cmax
    else:
        cmap, vmin, vmax = _cmap(trace.colorscale), trace.zmin, trace.zmax
        if trace.zmid is not None and (vmin is None or vmax is None):
            bound = float(np.nanmax(np.abs(z - trace.zmid))) or 1.0
            vmin, vmax = trace.zmid - bound, trace.zmid + bound
    image = ax.imshow(
        z,
        aspect="auto",
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        origin="upper" if reversed_y else "lower",
        interpolation="nearest",
    )
    n_rows, n_cols = z.shape
    font = 7 if max(n_rows, n_cols) > 16 else 9
    # every label that fits the axis, else every k-th one (a static picture has no hover to name the rest)
    line_px = font * 1.5 * ax.figure.dpi / 72
    fit_x, fit_y = (max(4, int(extent / line_px)) for extent in (ax.bbox.width, ax.bbox.height))
    xs, ys = range(0, n_cols, -(-n_cols // fit_x)), range(0, n_rows, -(-n_rows // fit_y))
    x_labels, y_labels = _labels(trace.x, n_cols), _labels(trace.y, n_rows)
    ax.set_xticks(list(xs), [x_labels[i] for i in xs], rotation=90 if n_cols > 8 else 0, fontsize=font)
    ax.set_yticks(list(ys), [y_labels[i] for i in ys], fontsize=font)
    if trace.text is not None and trace.texttemplate:
        text = np.asarray(trace.text, dtype=object)
        for (r, c), value in np.ndenumerate(text):
            ax.text(c, r, str(value), ha="center", va="center", fontsize=7)
    return image


def _plain(text: str) -> str:
    """Plotly's rich text as plain text: <br> -> newline, other tags dropped."""
    return re.sub(r"<[^>]+>", "", re.sub(r"<br\s*/?>", "\n", str(text)))


def _scatter(ax: Any, trace: Any) -> None:
    """Lines and markers with the trace's widths, colours and opacity; text labels where the mode has "text"."""
    mode = trace.mode or "lines"
    x, y = list(trace.x), list(trace.y)
    alpha = 1.0 if trace.opacity is None else float(trace.opacity)
    label = trace.name if trace.name and trace.showlegend is not False else "_nolegend_"
    if "lines" in mode:
        width = 1.2 if trace.line.width is None else float(trace.line.width) * _PT_PER_PX
        ax.plot(x, y, "-", label=label, linewidth=width, color=trace.line.color, alpha=alpha, solid_capstyle="butt")
        label = "_nolegend_"
    if "markers" in mode:
        marker = trace.marker
        size = 6.0 if marker.size is None else marker.size  # Plotly: diameter in px
        sizes = (np.asarray(size, dtype=float) * _PT_PER_PX) ** 2  # matplotlib: area in pt^2
        colour = marker.color if marker.color is not None else (trace.line.color or "C0")
        edge = marker.line.color if marker.line.width else "none"
        edge_width = float(marker.line.width or 0) * _PT_PER_PX
        ax.scatter(x, y, s=sizes, c=colour, alpha=alpha, label=label, edgecolors=edge or "#444",
                   linewidths=edge_width, zorder=3)  # fmt: skip
    if "text" in mode and trace.text is not None:
        texts = [trace.text] * len(x) if isinstance(trace.text, str) else list(trace.text)
        where = (trace.textposition or "middle center").split()
        va = {"top": "bottom", "bottom": "top"}.get(where[0], "center")
        ha = {"left": "right", "right": "left"}.get(where[-1], "center")
        size = 6.0 if trace.marker.size is None or not np.isscalar(trace.marker.size) else float(trace.marker.size)
        dy = {"bottom": 1, "top": -1}.get(va, 0) * (size / 2 + 2) * _PT_PER_PX
        for xi, yi, text in zip(x, y, texts, strict=True):
            ax.annotate(_plain(text), (xi, yi), xytext=(0, dy), textcoords="offset points", ha=ha, va=va,
                        fontsize=8, zorder=4)  # fmt: skip


def _table(ax: Any, trace: Any) -> None:
    columns = [list(col) for col in trace.cells.values]
    n_rows = max(len(col) for col in columns)
    cells = [[str(col[r]) if r < len(col) else "" for col in columns] for r in range(n_rows)]
    widths = [
        max(len(str(v)) for v in [header, *col]) + 2 for header, col in zip(trace.header.values, columns, strict=True)
    ]
    table = ax.table(
        cellText=cells,
        colLabels=[str(v) for v in trace.header.values],
        cellLoc="left",
        colWidths=[w / sum(widths) for w in widths],
        bbox=[0, 0, 1, 1],  # fill the axes: every row stays inside the image
    )
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    ax.axis("off")


def _table_rows(fig: Any) -> int:
    return max((max(len(c) for c in t.cells.values) + 1 for t in fig.data if t.type == "table"), default=0)


def render(fig: Any, dpi: int = 150) -> Any:
    """A matplotlib Figure drawing `fig` (a Plotly figure from circuitlab.viz)."""
    from matplotlib.figure import Figure

    layout = fig.layout
    width_px, height_px = layout.width or 800, layout.height or 500
    height_px = max(height_px, 16 * _table_rows(fig) + 80)  # 16 px per table row
    width_px = max(
        width_px,
        7 * max((sum(len(str(v)) + 2 for v in t.header.values) for t in fig.data if t.type == "table"), default=0),
    )
    out = Figure(figsize=(width_px / 100, height_px / 100), dpi=dpi)
    label_chars = max(
        (len(str(v)) for t in fig.data if t.type == "heatmap" and t.y is not None for v in t.y), default=0
    )
    area = _area(width_px, height_px, bool(layout.title.text), label_chars)
    axes: dict[tuple[str, str], Any] = {}
    images: list[tuple[Any, Any, Any]] = []  # (image, axes, trace)
    for trace in fig.data:
        kind = trace.type
        if kind == "table":
            ax = out.add_axes([0.02, 0.02, 0.96, 0.98 - (60 if layout.title.text else 20) / height_px])
            _table(ax, trace)
            continue
        if kind not in ("heatmap", "scatter"):
            raise ValueError(f"save_png draws heatmap, scatter and table traces, not {kind!r}")
        xname, yname = _axis_name(trace.xaxis, "x"), _axis_name(trace.yaxis, "y")
        if (xname, yname) not in axes:
            axes[(xname, yname)] = out.add_axes(_place(area, _domain(layout, xname), _domain(layout, yname)))
        ax = axes[(xname, yname)]
        if kind == "heatmap":
            reversed_y = getattr(_layout_axis(layout, yname), "autorange", None) == "reversed"
            images.append((_heatmap(ax, trace, layout, reversed_y), ax, trace))
        else:
            _scatter(ax, trace)
    for (xname, yname), ax in axes.items():
        xa, ya = _layout_axis(layout, xname), _layout_axis(layout, yname)
        if xa is not None and xa.title.text:
            ax.set_xlabel(xa.title.text, fontsize=9)
        if ya is not None and ya.title.text:
            ax.set_ylabel(ya.title.text, fontsize=9)
        if xa is not None and xa.type == "log":
            ax.set_xscale("log")
        heat = any(img[1] is ax for img in images)
        for axis, spec, which in ((ax.xaxis, xa, "x"), (ax.yaxis, ya, "y")):
            if spec is None:
                continue
            if spec.showticklabels is False:
                axis.set_ticks([])
            if not heat and spec.tickvals is not None:  # numeric ticks of a scatter axis, with their labels
                text = spec.ticktext if spec.ticktext is not None else spec.tickvals
                axis.set_ticks(list(spec.tickvals), [_plain(t) for t in text], fontsize=8)
            if not heat and spec.range is not None:
                (ax.set_xlim if which == "x" else ax.set_ylim)(*spec.range)
            if spec.visible is False:
                axis.set_visible(False)
                ax.spines[["left", "right"] if which == "y" else ["top", "bottom"]].set_visible(False)
        if not heat:  # Plotly draws no box around a scatter plot
            ax.spines[["top", "right"]].set_visible(False)
        handles, labels = ax.get_legend_handles_labels()
        if len(labels) > 1:  # beside the plot, as Plotly draws it
            ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    for shape in layout.shapes:  # vertical marker lines (add_vline): checkpoints
        if shape.type == "line" and shape.x0 == shape.x1 and shape.yref and "domain" in shape.yref:
            ax = axes.get((_axis_name(shape.xref, "x"), _axis_name(shape.yref.split()[0], "y")))
            if ax is not None:
                ax.axvline(shape.x0, color="#999", linestyle=":", linewidth=0.8)
    shared = [img for img in images if img[2].coloraxis]
    if shared:
        cax = out.add_axes([area[2] + 25 / width_px, area[1], 15 / width_px, area[3] - area[1]])
        bar = out.colorbar(shared[0][0], cax=cax)
        _bar_title(bar, layout[shared[0][2].coloraxis].colorbar.title.text)
    for image, ax, trace in images:
        if not trace.coloraxis:
            _bar_title(out.colorbar(image, ax=ax, fraction=0.046, pad=0.02), trace.colorbar.title.text)
    for note in layout.annotations:  # subplot titles
        if note.xref == "paper" and note.text:
            left, bottom, right, top = area
            x = left + float(note.x) * (right - left)
            y = bottom + float(note.y) * (top - bottom)
            out.text(x, y + 0.005, note.text, ha="center", va="bottom", fontsize=8)
    if layout.title.text:
        title = _plain(layout.title.text)
        out.suptitle(
            title, fontsize=11 if max(map(len, title.splitlines())) < 70 else 9, y=1 - 12 / height_px, va="top"
        )
    return out


def _bar_title(bar: Any, text: str | None) -> None:
    """The colour bar's title above it, as Plotly draws it."""
    if text:
        bar.ax.set_title(_plain(text), fontsize=8, loc="left", pad=6)


def save_png(fig: Any, path: str | Path, dpi: int = 150) -> Path:
    """Write `fig` (a Plotly figure from circuitlab.viz) as a PNG through matplotlib, atomically."""
    image = render(fig, dpi=dpi)
    return atomic_write(
        path, lambda tmp: image.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.1)
    )
