"""Evaluation on fixed batches and the `metrics.jsonl` log (one JSON object per evaluation)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..files import atomic_write
from ..tasks import Batch, per_position_loss

MetricFn = Callable[[torch.nn.Module], float | dict[str, float]]


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: list[Batch]) -> dict[str, Any]:
    """Mean masked loss over the batches, and the mean loss at each position (None where unscored)."""
    loss_sum = torch.zeros(batches[0].tokens.shape[1], dtype=torch.float64)
    count = torch.zeros_like(loss_sum)
    for batch in batches:
        loss = per_position_loss(model(batch.tokens), batch)  # [batch, pos]
        loss_sum += loss.sum(0).double().cpu()
        count += batch.loss_mask.sum(0).double().cpu()
    per_pos = [round(s / c, 6) if c else None for s, c in zip(loss_sum.tolist(), count.tolist(), strict=True)]
    return {"eval_loss": (loss_sum.sum() / count.sum().clamp(min=1)).item(), "loss_per_position": per_pos}


def run_metric_fns(model: torch.nn.Module, fns: dict[str, MetricFn]) -> dict[str, float]:
    """Call each registered metric; a dict result is flattened as name.key."""
    out: dict[str, float] = {}
    with torch.no_grad():
        for name, fn in fns.items():
            value = fn(model)
            if isinstance(value, dict):
                out.update({f"{name}.{k}": _jsonable(v) for k, v in value.items()})
            else:
                out[name] = _jsonable(value)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLog:
    """Appends one line per evaluation; on resume keeps only the lines up to the checkpoint's step."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        rows = []
        for line in self.path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut short by a kill: everything after it is dropped
        return rows

    def truncate_after(self, step: int) -> list[dict[str, Any]]:
        rows = [r for r in self.read() if r["step"] <= step]
        atomic_write(self.path, lambda tmp: Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in rows)))
        return rows

    def append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
