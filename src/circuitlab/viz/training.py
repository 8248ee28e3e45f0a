"""Training over time: loss curves and head-role trajectories from a run's metrics.jsonl, with the
steps where checkpoints were written marked (the weights one can go back to and analyse)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._common import go, layout

_HEAD_KEY = re.compile(r"(?P<prefix>\w+)\.(?P<score>\w+)\.L(?P<layer>\d+)H(?P<head>\d+)")


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of `run_dir/metrics.jsonl` (one per evaluation), by step."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a run directory written by circuitlab train?")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n} is not valid JSON: {err}") from err
    return sorted(rows, key=lambda r: r["step"])


def head_score_names(rows: Sequence[Mapping[str, Any]], prefix: str = "heads") -> list[str]:
    """Head scores recorded in the rows (keys `prefix.score.LxHy`, from `register_head_scores`)."""
    names = {
        m["score"] for key in (rows[-1] if rows else {}) if (m := _HEAD_KEY.fullmatch(key)) and m["prefix"] == prefix
    }
    return sorted(names)


def _mark_checkpoints(fig: Any, checkpoints: Sequence[int]) -> None:
    """Dotted vertical lines at the checkpoint steps (set at once: add_vline one by one is quadratic)."""
    line = dict(dash="dot", color="#999", width=1)
    shapes = [dict(type="line", x0=s, x1=s, xref="x", y0=0, y1=1, yref="y domain", line=line) for s in checkpoints]
    fig.update_layout(shapes=shapes)


def loss_curves(
    rows: Sequence[Mapping[str, Any]], checkpoints: Sequence[int] = (), title: str | None = None, log_x: bool = False
) -> Any:
    """Train and eval loss against the step; dotted vertical lines at the checkpoints."""
    if not rows:
        raise ValueError("no metrics rows to plot")
    fig = go().Figure()
    for key, name in (("eval_loss", "eval loss"), ("train_loss", "train loss")):
        points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            fig.add_trace(go().Scatter(x=list(xs), y=list(ys), mode="lines+markers", name=name))
    _mark_checkpoints(fig, checkpoints)
    fig.update_xaxes(title_text="step", type="log" if log_x else "linear")
    fig.update_yaxes(title_text="loss (nats)")
    return layout(fig, title, width=760, height=400)


def head_trajectories(
    rows: Sequence[Mapping[str, Any]],
    score: str = "induction",
    checkpoints: Sequence[int] = (),
    title: str | None = None,
    prefix: str = "heads",
) -> Any:
    """One line per head: its `score` at each evaluation (metrics `prefix.score.LxHy`)."""
    heads: dict[tuple[int, int], str] = {}
    for key in rows[-1] if rows else {}:
        m = _HEAD_KEY.fullmatch(key)
        if m and m["prefix"] == prefix and m["score"] == score:
            heads[(int(m["layer"]), int(m["head"]))] = key
    if not heads:
        available = head_score_names(rows, prefix)
        raise ValueError(
            f"the metrics hold no {prefix}.{score}.LxHy values; recorded head scores: {available or 'none'} "
            "(train with metrics=register_head_scores() to record them)"
        )
    fig = go().Figure()
    for (layer, head), key in sorted(heads.items()):
        points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        xs, ys = zip(*points, strict=True) if points else ((), ())
        fig.add_trace(go().Scatter(x=list(xs), y=list(ys), mode="lines+markers", name=f"L{layer}H{head}"))
    _mark_checkpoints(fig, checkpoints)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text=score.replace("_", " "))
    return layout(fig, title or f"{score.replace('_', ' ')} score per head over training", width=760, height=400)


def loss_per_position(rows: Sequence[Mapping[str, Any]], steps: Sequence[int] | None = None, title: str | None = None):
    """Eval loss at each position, one line per chosen step (default: about five spread over the run)."""
    rows = [r for r in rows if r.get("loss_per_position")]
    if not rows:
        raise ValueError("the metrics hold no loss_per_position")
    if steps is None:
        picks = sorted({round(i * (len(rows) - 1) / 4) for i in range(5)})
        chosen = [rows[i] for i in picks]
    else:
        by_step = {r["step"]: r for r in rows}
        missing = [s for s in steps if s not in by_step]
        if missing:
            raise ValueError(f"no evaluation at steps {missing}; evaluated steps: {sorted(by_step)}")
        chosen = [by_step[s] for s in steps]
    fig = go().Figure()
    for r in chosen:
        ys = r["loss_per_position"]
        fig.add_trace(go().Scatter(x=list(range(len(ys))), y=ys, mode="lines", name=f"step {r['step']}"))
    fig.update_xaxes(title_text="position")
    fig.update_yaxes(title_text="loss (nats)")
    return layout(fig, title, width=760, height=380)
