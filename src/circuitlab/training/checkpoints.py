"""Training checkpoints: model weights, optimiser state and loop counters in one safetensors file.

`checkpoints/step_000120.safetensors` is written to a temporary name and renamed, so a run killed
mid-save leaves only complete checkpoints under their final names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..files import atomic_write
from ..model import CheckpointError

PATTERN = re.compile(r"step_(\d+)\.safetensors")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:06d}.safetensors"


def save_checkpoint(
    run_dir: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, counters: dict[str, Any]
) -> Path:
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().contiguous().cpu()
    metadata = {"step": str(step), "counters": json.dumps(counters)}
    path = checkpoint_path(run_dir, step)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return path


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint, by step."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := PATTERN.fullmatch(p.name))]
    return sorted(found)


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> tuple[int, dict[str, Any]]:
    """Restore weights (and optimiser state) in place; returns (step, counters)."""
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            metadata = f.metadata()
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: {err}") from err
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(state)
    if optimizer is not None:
        optim_state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                optim_state.setdefault(int(index), {})[name] = value
        groups = optimizer.state_dict()["param_groups"]
        optimizer.load_state_dict({"state": optim_state, "param_groups": groups})
    return int(metadata["step"]), json.loads(metadata["counters"])
