"""Moving a model between torch and the NumPy twin through a `.npz` file (no pickle inside)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

CONFIG_KEY = "__config__"


def export_npz(model: Any, path: str | Path) -> Path:
    """Write a HookedTransformer's weights (state-dict names) and config to `path`, atomically."""
    path = Path(path)
    arrays = {name: t.detach().cpu().numpy() for name, t in model.state_dict().items()}
    arrays[CONFIG_KEY] = np.array(json.dumps(model.cfg.to_dict()))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_npz(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(config dict, parameters) from a file written by `export_npz`; ready for `forward`."""
    with np.load(path, allow_pickle=False) as data:
        if CONFIG_KEY not in data:
            raise ValueError(f"{path} has no {CONFIG_KEY!r} entry: write it with circuitlab.numpy_ref.export_npz")
        cfg = json.loads(str(data[CONFIG_KEY]))
        params = {k: data[k] for k in data.files if k != CONFIG_KEY}
    return cfg, params
