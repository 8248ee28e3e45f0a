"""Saving and loading models: a folder with `config.json` and `model.safetensors`.

Both files are written into a fresh temporary folder beside the target, which then replaces the
target by rename, so an interrupted save leaves either the old checkpoint or the new one, never half.
Loading never unpickles: weights come through safetensors only.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import HookedTransformerConfig

if TYPE_CHECKING:
    from .transformer import HookedTransformer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "circuitlab.HookedTransformer"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, corrupt, or not matching its config."""


def save_model(model: HookedTransformer, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        config = {"format": FORMAT, "config": model.cfg.to_dict()}
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
        state = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT})
        if path.exists():
            if not (path / CONFIG_FILE).is_file() and any(path.iterdir()):
                raise FileExistsError(f"{path} exists and is not a circuitlab checkpoint; refusing to replace it")
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "ckpt")  # move aside, then swap in the new folder
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def read_config(path: str | Path) -> HookedTransformerConfig:
    path = Path(path)
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{path} is not a circuitlab checkpoint: {CONFIG_FILE} is missing (save with model.save)")
    try:
        data = json.loads(config_path.read_text())
        if data.get("format") != FORMAT:
            raise CheckpointError(f"{config_path} is not a circuitlab config (format {data.get('format')!r})")
        return HookedTransformerConfig.from_dict(data["config"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{config_path} is corrupt or invalid: {err}") from err


def load_model(path: str | Path, device: str | torch.device | None = None) -> HookedTransformer:
    from .transformer import HookedTransformer

    path = Path(path)
    cfg = read_config(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{path} has no {WEIGHTS_FILE}")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights} is corrupt or truncated: {err}") from err
    cfg.init_weights = False  # the weights come from the file
    cfg.device = None if device is None else str(torch.device(device))  # loads to the CPU unless asked
    model = HookedTransformer(cfg, move_to_device=False)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs config {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{weights} does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"shape mismatches {wrong[:5]}"
        )
    model.load_state_dict(state)
    cfg.init_weights = True
    return model.to(cfg.device) if cfg.device is not None else model
