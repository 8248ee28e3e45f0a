"""Helpers the studies share: training a preset with a seed, repeated-token losses, small Plotly figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..model import HookedTransformer
from ..tasks import Batch, RepeatedTokens, Task
from ..training import TrainResult, from_preset, train
from ..viz._common import layout
from .base import phase, progress_enabled


def train_preset(
    preset: str,
    seed: int,
    steps: int,
    *,
    model: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    task: Task | None = None,
    task_params: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    out_dir: Path | None = None,
) -> tuple[Task, TrainResult]:
    """Train a preset (with overrides) for `steps`; `seed` sets both the initialisation and the data order.

    Training is deterministic in its arguments, so a plain run (no task, metrics or run directory) is
    memoised for the process: studies run together (as in the tests) share identical models.
    """
    preset_task, model_cfg, train_cfg = from_preset(
        preset,
        task_params=task_params,
        model={**(model or {}), "seed": seed},
        training={"steps": steps, "seed": seed, **(training or {})},
    )
    plain = task is None and metrics is None and out_dir is None
    key = repr((model_cfg.to_dict(), train_cfg.to_dict(), preset_task.to_dict(), torch.get_num_threads()))
    if plain and key in _TRAINED:
        return _TRAINED[key]
    task = task or preset_task
    phase(f"training {preset} (seed {seed}, {steps} steps)")
    model = HookedTransformer(model_cfg)
    result = train(model, task, train_cfg, out_dir=out_dir, metrics=metrics, progress=progress_enabled())
    if plain:
        _TRAINED[key] = (task, result)
    return task, result


_TRAINED: dict[str, tuple[Task, TrainResult]] = {}


def token_losses(model: HookedTransformer, batch: Batch) -> torch.Tensor:
    """Cross-entropy of every next-token prediction [batch, pos] (the last position predicts nothing: 0)."""
    with torch.no_grad():
        logits = model(batch.tokens.to(model.device)).float().cpu()
    loss = F.cross_entropy(logits.transpose(1, 2), batch.targets, reduction="none")
    loss[:, -1] = 0
    return loss


def copy_masks(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, second) [batch, pos]: predictions of the chunk's tokens (after its first) in each copy.

    The second mask is the task's loss mask; the first predicts the same tokens before any copy exists.
    """
    pos = torch.arange(batch.tokens.shape[1])[None, :]
    start, chunk = batch.metadata["first_start"][:, None], batch.metadata["chunk_len"][:, None]
    first = (pos >= start) & (pos < start + chunk - 1)
    return first, batch.loss_mask


def icl_measures(model: HookedTransformer, batch: Batch) -> dict[str, float]:
    """Loss on the first copy (early), on the second copy (late) and the in-context-learning score
    late - early (Olsson et al. 2022: negative when the context helps), on the same target tokens."""
    loss = token_losses(model, batch)
    first, second = copy_masks(batch)
    early = float((loss * first).sum() / first.sum())
    late = float((loss * second).sum() / second.sum())
    return {"early_loss": early, "late_loss": late, "icl_score": late - early}


class RepeatedTokensLM(RepeatedTokens):
    """Repeated random tokens scored as a language model: every next-token prediction counts, so the
    first copy (unpredictable) is trained as well as the second and the ICL score compares like with like."""

    def _generate(self, batch_size: int, gen: torch.Generator) -> Batch:
        batch = super()._generate(batch_size, gen)
        mask = torch.ones_like(batch.loss_mask)
        mask[:, -1] = False
        return Batch(batch.tokens, batch.targets, mask, batch.metadata)


def attention_pattern(model: HookedTransformer, tokens: torch.Tensor, layer: int) -> torch.Tensor:
    """[batch, head, query, key] attention of one layer."""
    name = f"blocks.{layer}.attn.hook_pattern"
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens.to(model.device), names_filter=name)
    return cache[name].float().cpu()


def summary(values: Sequence[float]) -> dict[str, float]:
    """min / median / mean / max of per-seed values."""
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    return {"min": t.min().item(), "median": t.median().item(), "mean": t.mean().item(), "max": t.max().item()}


def fit_slope(x: Sequence[float], y: Sequence[float], n_groups: int = 1) -> dict[str, float]:
    """Least-squares slope of y on x with a 95% interval (slope +- t * standard error, t ~ the Student
    quantile): a trend with its uncertainty, for claims "y grows with x". `n_groups` > 1: x and y were
    centred per group (one intercept each), which costs that many degrees of freedom."""
    xt = torch.tensor([float(v) for v in x], dtype=torch.float64)
    yt = torch.tensor([float(v) for v in y], dtype=torch.float64)
    n = len(xt)
    if n < 2 + n_groups or float(xt.var()) == 0:
        raise ValueError(f"a slope needs >= {2 + n_groups} points at >= 2 distinct x values, got {n}")
    dx = xt - xt.mean()
    slope = float((dx * (yt - yt.mean())).sum() / (dx * dx).sum())
    resid = yt - yt.mean() - slope * dx
    dof = n - 1 - n_groups
    se = float((resid.pow(2).sum() / dof / (dx * dx).sum()).sqrt())
    z = 1.959964  # 97.5% Student quantile by the Cornish-Fisher expansion (2.357 at 7 dof; exact 2.365)
    t = z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)
    return {"slope": slope, "lo": slope - t * se, "hi": slope + t * se, "n": float(n)}


# ---- figures: circuitlab.viz's white layout; integer axes get integer ticks ---------------------------
def _integer_axis(values: Sequence[Any] | None) -> bool:
    if values is None or len(values) == 0:
        return False
    try:
        return all(float(v).is_integer() for v in values)
    except (TypeError, ValueError):  # category labels
        return False


def _style(fig: Any, title: str, xlabel: str, ylabel: str, height: int, x: Any = None, y: Any = None) -> Any:
    layout(fig, title, xaxis_title=xlabel, yaxis_title=ylabel, height=height)
    if _integer_axis(x):
        fig.update_xaxes(tickformat="d")
    if _integer_axis(y):
        fig.update_yaxes(tickformat="d")
    return fig


def heatmap(
    z: Any,
    title: str,
    x: Sequence[Any] | None = None,
    y: Sequence[Any] | None = None,
    xlabel: str = "",
    ylabel: str = "",
    zmid: float | None = None,
    colorscale: str | None = None,
) -> Any:
    import plotly.graph_objects as go

    z = torch.as_tensor(z).float().tolist() if not isinstance(z, list) else z
    kwargs: dict[str, Any] = {"colorscale": colorscale or ("RdBu" if zmid is not None else "Viridis")}
    if zmid is not None:
        kwargs.update(zmid=zmid, reversescale=True)
    fig = go.Figure(
        go.Heatmap(z=z, x=list(x) if x is not None else None, y=list(y) if y is not None else None, **kwargs)
    )
    _style(fig, title, xlabel, ylabel, 420, x, y)
    fig.update_yaxes(autorange="reversed")
    return fig


def lines(
    x: Sequence[Any],
    ys: dict[str, Sequence[Any]],
    title: str,
    xlabel: str = "",
    ylabel: str = "",
    log_x: bool = False,
    log_y: bool = False,
) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure([go.Scatter(x=list(x), y=list(y), mode="lines+markers", name=name) for name, y in ys.items()])
    _style(fig, title, xlabel, ylabel, 400, x=None if log_x else list(x))
    if log_x:
        fig.update_xaxes(type="log")
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def bars(labels: Sequence[str], values: dict[str, Sequence[float]], title: str, ylabel: str = "") -> Any:
    import plotly.graph_objects as go

    fig = go.Figure([go.Bar(x=list(labels), y=list(v), name=name) for name, v in values.items()])
    _style(fig, title, "", ylabel, 380)
    fig.update_layout(barmode="group")
    return fig
