"""Finding a model's files: a local folder in Hugging Face layout, or a hub name fetched into the cache.

A folder holds `config.json` and weights as `model.safetensors`, `pytorch_model.bin` (read with
`weights_only=True`, never unpickling code) or their sharded forms with an `*.index.json`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]
_TRUE = ("1", "on", "yes", "true")


class HubUnreachableError(OSError):
    """A hub name was given but the Hugging Face Hub cannot be reached (offline or no network)."""


def _offline() -> bool:
    return any(os.environ.get(var, "").lower() in _TRUE for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _unreachable(name: str, why: str) -> HubUnreachableError:
    return HubUnreachableError(
        f"cannot load {name!r}: it is not a local folder and the Hugging Face Hub is unreachable ({why}); "
        "pass a local folder in Hugging Face layout instead (config.json plus model.safetensors or "
        "pytorch_model.bin, as written by transformers' save_pretrained)"
    )


def resolve(name_or_path: str | os.PathLike, revision: str | None = None) -> Path:
    """The local folder holding the model: `name_or_path` itself, or the hub snapshot of that name."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{path} has no {CONFIG_FILE}: expected a folder in Hugging Face layout")
        return path
    name = str(name_or_path)
    if path.exists() or name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:
        raise FileNotFoundError(f"{name!r} is not a folder: expected a folder in Hugging Face layout or a hub name")
    return _download(name, revision)


def _download(name: str, revision: str | None) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError
    except ImportError as err:  # pragma: no cover - huggingface_hub comes with transformers
        raise _unreachable(name, "huggingface_hub is not installed: pip install 'circuitlab[hf]'") from err
    offline = _offline()
    try:
        folder = snapshot_download(
            name, revision=revision, allow_patterns=HUB_PATTERNS, local_files_only=offline, etag_timeout=5
        )
    except RepositoryNotFoundError as err:
        raise FileNotFoundError(f"{name!r} is neither a local folder nor a model on the Hugging Face Hub") from err
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, OSError) as err:
        why = "HF_HUB_OFFLINE is set and the model is not in the local cache" if offline else type(err).__name__
        raise _unreachable(name, why) from err
    except Exception as err:  # network errors surface as several httpx / hub classes
        raise _unreachable(name, f"{type(err).__name__}: {err}") from err
    return Path(folder)


def read_config(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / CONFIG_FILE).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{folder / CONFIG_FILE} is not valid JSON: {err}") from err


def _load_one(file: Path) -> dict[str, torch.Tensor]:
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file))
    return torch.load(file, map_location="cpu", weights_only=True)


def load_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """Every weight tensor in the folder, by its Hugging Face name (shards merged)."""
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return _load_one(folder / name)
        index = folder / f"{name}.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(_load_one(folder / shard))
            return state
    raise FileNotFoundError(
        f"{folder} has no weights: expected one of {[*WEIGHT_FILES, *(f'{n}.index.json' for n in WEIGHT_FILES)]}"
    )
