"""Training checkpoints: model weights, optimiser state and loop counters in one safetensors file.

`checkpoints/step_000120.safetensors` is written to a temporary name and renamed, so a run killed
mid-save leaves only complete checkpoints under their final names (`remove_stale_temps` clears the
temporaries on resume). A checkpoint holds nothing but what the run's config and step determine, in
one metadata entry (safetensors writes several in random order), so the file is the same byte for byte
in every run of the same config, interrupted and resumed or not.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..files import atomic_write
from ..model import CheckpointError

PATTERN = re.compile(r"step_(\d+)\.safetensors")
HEADER_KEY = "circuitlab.checkpoint"
STALE = ("checkpoints/.step_*.safetensors.*.tmp", ".config.json.*.tmp", ".metrics.jsonl.*.tmp")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:06d}.safetensors"


def save_checkpoint(
    run_dir: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, counters: dict[str, Any]
) -> Path:
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().contiguous().cpu()
    metadata = {HEADER_KEY: json.dumps({"step": step, "counters": counters}, sort_keys=True)}
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
    if HEADER_KEY in metadata:
        header = json.loads(metadata[HEADER_KEY])
        return int(header["step"]), header["counters"]
    return int(metadata["step"]), json.loads(metadata["counters"])  # older checkpoints: two metadata entries


def remove_stale_temps(run_dir: Path) -> list[Path]:
    """Delete the temporaries a killed run left in `run_dir` (half-written checkpoints, and `.final.*.tmp/`
    folders of older versions' model.save); returns what was removed."""
    run_dir = Path(run_dir)
    files = [p for pattern in STALE for p in run_dir.glob(pattern) if p.is_file()]
    folders = [p for p in run_dir.glob(".final.*") if p.is_dir() and p.suffix in (".tmp", ".old")]
    for p in files:
        p.unlink(missing_ok=True)
    for p in folders:
        shutil.rmtree(p, ignore_errors=True)
    return sorted(files + folders)
