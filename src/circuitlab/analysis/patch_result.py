"""`PatchingResult`: an activation-patching sweep with what it takes to read it — the clean and corrupted runs'
metric, the normalised effect (patched - corrupted) / (clean - corrupted) (0 = the corrupted run, 1 = the
clean run; None when the two runs' metrics are equal), and labels (`pos:token` columns, layer / head rows).

In a notebook it shows as a coloured table (the figures' diverging scale: white 0, blue 1, the raw metric on
hover; no script, so it works offline and in a saved notebook); `repr` is a summary and the largest effects;
`.table()` / `.to_pandas()` one row per cell; `.figure()` the Plotly heatmap. `activation_patching` runs a
sweep and returns one; the TransformerLens-style sweeps (`patch_resid_pre`, ...) keep returning tensors, and
`PatchingResult.from_values` wraps such a tensor.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..table import Table, TableView
from .metrics import Metric
from .patching import Direction, check_pair, patch_activation

if TYPE_CHECKING:
    from ..model.transformer import HookedTransformer

_TOP = 10  # cells listed by `repr`


@dataclass(repr=False)  # the repr is the summary and the largest effects
class PatchingResult(TableView):
    """values: the metric of each patched run, [layer] / [layer, pos] / [layer, head] / [layer, pos, head]
    (as `patch_activation` returns it); `dims` names those axes; `labels[dim]` labels each index."""

    values: torch.Tensor
    clean: float
    corrupted: float
    dims: tuple[str, ...]
    labels: dict[str, list[str]]
    act: str = "activation"
    metric_name: str = "metric"
    direction: str = "denoise"

    def __post_init__(self) -> None:
        self.values = self.values.detach().float().cpu()
        if len(self.dims) != self.values.ndim:
            raise ValueError(f"dims {self.dims} do not match values of shape {tuple(self.values.shape)}")
        for dim, n in zip(self.dims, self.values.shape, strict=True):
            if len(self.labels.get(dim, ())) != n:
                raise ValueError(f"{dim!r} needs {n} labels, got {len(self.labels.get(dim, ()))}")

    @classmethod
    def from_values(
        cls,
        values: torch.Tensor,
        clean: float,
        corrupted: float,
        tokens: Sequence[str] | None = None,
        act: str = "resid_pre",
        by_pos: bool = True,
        layers: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> PatchingResult:
        """Wrap a sweep's tensor (shapes as `patch_activation` / `attribution_patch` return them for `act` and
        `by_pos`); `tokens` are the clean prompt's token strings (the position labels)."""
        values = torch.as_tensor(values)
        per_head = act in ("z", "result", "q", "k", "v", "pattern")
        dims = ("layer", *(("pos",) if by_pos else ()), *(("head",) if per_head else ()))
        if len(dims) != values.ndim:
            raise ValueError(f"act={act!r}, by_pos={by_pos} gives {dims}, but values have shape {tuple(values.shape)}")
        layers = list(range(values.shape[0])) if layers is None else [int(l) for l in layers]
        labels = {"layer": [f"{act} {l}" if not per_head else f"L{l}" for l in layers]}
        if by_pos:
            n_pos = values.shape[1]
            if tokens is not None and len(tokens) != n_pos:
                raise ValueError(f"got {len(tokens)} tokens for {n_pos} positions")
            labels["pos"] = (
                [f"{i}:{t}" for i, t in enumerate(tokens)] if tokens is not None else [str(i) for i in range(n_pos)]
            )
        if per_head:
            labels["head"] = [f"H{h}" for h in range(values.shape[-1])]
        return cls(values, float(clean), float(corrupted), dims, labels, act=act, **kwargs)

    # ---- numbers ---------------------------------------------------------------------------------
    @property
    def normalised(self) -> torch.Tensor | None:
        """(values - corrupted) / (clean - corrupted), same shape; None when clean and corrupted (nearly) agree."""
        spread = self.clean - self.corrupted
        if abs(spread) < 1e-6 * max(1.0, abs(self.clean)):
            return None
        return (self.values - self.corrupted) / spread

    def _cell_labels(self) -> list[tuple[str, ...]]:
        """Each cell's labels, in the values' (row-major) order."""
        grids = torch.cartesian_prod(*(torch.arange(n) for n in self.values.shape)).reshape(-1, self.values.ndim)
        return [tuple(self.labels[d][int(i)] for d, i in zip(self.dims, idx, strict=True)) for idx in grids]

    def table(self) -> Table:
        """One row per cell: its labels, the raw metric and the normalised effect."""
        norm = self.normalised
        flat_norm = norm.flatten().tolist() if norm is not None else [None] * self.values.numel()
        rows = [
            dict(zip(self.dims, labels, strict=True)) | {self.metric_name: value, "normalised": n}
            for labels, value, n in zip(self._cell_labels(), self.values.flatten().tolist(), flat_norm, strict=True)
        ]
        return Table(rows, [*self.dims, self.metric_name, "normalised"], title=f"patching {self.act}")

    def top(self, k: int = _TOP) -> Table:
        """The k cells with the largest effect (|normalised|, or |metric - corrupted| when it is undefined)."""
        effect = self.normalised if self.normalised is not None else self.values - self.corrupted
        order = effect.flatten().abs().argsort(descending=True, stable=True)[:k].tolist()
        table = self.table()
        return Table([table[i] for i in order], table.columns, title=f"largest effects ({len(order)} of {len(table)})")

    def _what(self) -> str:
        if self.direction == "denoise":
            return "clean activations patched into the corrupted run"
        return "corrupted activations patched into the clean run"

    def summary(self) -> str:
        shape = "[" + ", ".join(f"{d} {n}" for d, n in zip(self.dims, self.values.shape, strict=True)) + "]"
        where = "clean into corrupted" if self.direction == "denoise" else "corrupted into clean"
        best = self.top(1)[0]
        cell = " ".join(str(best[d]) for d in self.dims)
        effect = f"normalised {best['normalised']:.3f}" if best["normalised"] is not None else "clean == corrupted"
        return (
            f"PatchingResult {self.act} {shape} ({where}): {self.metric_name} clean {self.clean:.4g}, corrupted "
            f"{self.corrupted:.4g}; largest effect at {cell} "
            f"({self.metric_name} {best[self.metric_name]:.4g}, {effect})"
        )

    def __repr__(self) -> str:  # a row per cell is too long for a screen: the largest effects
        return self.summary() + "\n" + self.top().text()

    # ---- views -----------------------------------------------------------------------------------
    def grid(self) -> tuple[torch.Tensor, list[str], list[str]]:
        """The values as a 2-d grid for the heatmaps: (values [row, column], row labels, column labels).
        [layer, pos, head] becomes rows LxHy, columns pos:token; [layer] one column."""
        v, lab = self.values, self.labels
        if self.dims == ("layer",):
            return v[:, None], lab["layer"], ["all positions"]
        if self.dims == ("layer", "pos", "head"):
            rows = [f"{l}{h}" for l in lab["layer"] for h in lab["head"]]
            return v.permute(0, 2, 1).reshape(-1, v.shape[1]), rows, lab["pos"]
        return v, lab[self.dims[0]], lab[self.dims[1]]

    def figure(self, title: str | None = None) -> Any:
        """The Plotly heatmap (`viz.layer_pos_heatmap`), normalised, the raw metric on hover."""
        from ..viz.patching import layer_pos_heatmap

        z, rows, cols = self.grid()
        fig = layer_pos_heatmap(z, None, title=title or f"{self.act}: {self._what()}", metric_name=self.metric_name,
                                layer_labels=rows, clean=self.clean, corrupted=self.corrupted)  # fmt: skip
        fig.update_traces(x=cols)
        fig.update_xaxes(title_text=self.dims[1] if len(self.dims) == 2 else "position")
        return fig

    def _repr_html_(self) -> str:
        """The grid as an HTML table coloured like the figures (no script: shows offline and in saved notebooks)."""
        from ..viz._common import DIVERGING

        z, rows, cols = self.grid()
        norm = self.normalised
        shown = ((z - self.corrupted) / (self.clean - self.corrupted)) if norm is not None else z - self.corrupted
        finite = shown[torch.isfinite(shown)].abs()
        bound = max(1.0 if norm is not None else 0.0, float(finite.max()) if finite.numel() else 0.0) or 1.0
        head = "".join(f'<th style="{_TH}">{html.escape(c)}</th>' for c in cols)
        body = []
        for r, label in enumerate(rows):
            cells = []
            for c in range(len(cols)):
                value, raw = float(shown[r, c]), float(z[r, c])
                colour = _colour(DIVERGING, value / bound)
                ink = "white" if abs(value / bound) > 0.6 else "black"
                tip = f"{label}, {cols[c]}: {self.metric_name} {raw:.4g}" + (
                    f", normalised {value:.3f}" if norm is not None else ""
                )
                cells.append(
                    f'<td title="{html.escape(tip)}" style="background:{colour};color:{ink};{_TD}">{value:.2f}</td>'
                )
            body.append(f'<tr><th style="{_TH}">{html.escape(label)}</th>{"".join(cells)}</tr>')
        what = "normalised effect (patched - corrupted) / (clean - corrupted)" if norm is not None else (
            f"{self.metric_name} - corrupted (clean == corrupted: no normalisation)")  # fmt: skip
        return (
            f"<p>{html.escape(self.summary())}</p>"
            f'<table class="circuitlab-patching" style="border-collapse:collapse;font-size:11px">'
            f"<thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f"<p style='font-size:11px'>{html.escape(what)}; the raw value on hover</p>"
        )


_TH = "padding:2px 4px;font-weight:normal;white-space:pre;text-align:right"
_TD = "padding:2px 4px;text-align:center;min-width:2.5em"


def _colour(scale: list[list[Any]], at: float) -> str:
    """The colour of `at` in [-1, 1] (clipped) on a Plotly colour scale, as `rgb(r,g,b)`."""
    from plotly.colors import sample_colorscale

    return sample_colorscale(scale, [min(1.0, max(0.0, (at + 1) / 2))])[0].replace(" ", "")


def activation_patching(
    model: HookedTransformer,
    clean_tokens: torch.Tensor,
    corrupted_tokens: torch.Tensor,
    metric: Metric,
    act: str = "resid_pre",
    by_pos: bool = True,
    layers: Sequence[int] | None = None,
    direction: Direction = "denoise",
    metric_name: str = "metric",
    **kwargs: Any,
) -> PatchingResult:
    """`patch_activation` with the clean and corrupted runs' metric and the clean prompt's tokens as labels:
    a `PatchingResult` (normalised effect, table, notebook view, figure). `kwargs` go to `patch_activation`."""
    from ..viz.predictions import str_tokens

    clean, corrupted = check_pair(model, clean_tokens, corrupted_tokens)
    values = patch_activation(model, clean, corrupted, metric, act, by_pos=by_pos, layers=layers,
                              direction=direction, **kwargs)  # fmt: skip
    with torch.no_grad():
        clean_value, corrupted_value = (float(metric(model(t))) for t in (clean, corrupted))
    tokens = str_tokens(model, clean[0]) if by_pos else None
    return PatchingResult.from_values(values, clean_value, corrupted_value, tokens, act=act, by_pos=by_pos,
                                      layers=layers, metric_name=metric_name, direction=direction)  # fmt: skip
