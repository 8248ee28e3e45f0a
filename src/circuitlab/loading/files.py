"""Finding a model's files: a local folder in Hugging Face layout, or a hub name fetched into the cache.

A folder holds `config.json` and weights as `model.safetensors`, `pytorch_model.bin` (read with
`weights_only=True`, never unpickling code) or their sharded forms with an `*.index.json` (whose shards
must lie inside the folder). A corrupt, truncated or mismatched file raises a one-line `CheckpointError`
naming the file and what is wrong.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from ..model.io import CheckpointError

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


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        kind = "null" if data is None else type(data).__name__
        raise CheckpointError(f"{path} holds a JSON {kind}, not an object: expected {what}")
    return data


def read_config(folder: Path) -> dict[str, Any]:
    return _read_json_object(folder / CONFIG_FILE, "a Hugging Face config (model_type, architectures, sizes)")


def check_integer_fields(folder: Path, config: dict[str, Any], fields: dict[str, str]) -> None:
    """Each Hugging Face field in `fields` (-> the field of ours it sets) present in `config` must be a
    positive integer (or null): one line naming the field, before transformers dumps its validation."""
    for hf_name, ours in fields.items():
        value = config.get(hf_name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise CheckpointError(
                f"{folder / CONFIG_FILE}: {hf_name} is {value!r}, expected a positive integer (it sets {ours})"
            )


def _convert_hint(file: Path) -> str:
    target = file.parent / "model.safetensors"
    return (
        f'if you trust the file, convert it once to safetensors: python -c "import torch; from safetensors.torch '
        f"import save_file; s = torch.load('{file}', weights_only=False); "
        f"save_file({{k: v.contiguous().clone() for k, v in s.items() if isinstance(v, torch.Tensor)}}, '{target}')\""
    )


def _load_one(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise CheckpointError(f"{file} is missing (named by the folder's weight index)")
    if file.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(file))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{file} is truncated or corrupt: {err}") from err
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():
            raise CheckpointError(f"{file} is truncated or corrupt: {str(err).splitlines()[0]}") from err
        raise CheckpointError(
            f"{file} holds pickled code, not only weights: refused to unpickle it (that could run any code); "
            + _convert_hint(file)
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{file} is truncated or corrupt: {str(err).splitlines()[0]}") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{file} does not hold a dict of tensors (a state dict) but {type(state).__name__}")
    return state


def _shards(index: Path) -> list[Path]:
    """The shard files an `*.index.json` names; each must be a file inside the model folder."""
    weight_map = _read_json_object(index, 'an index {"weight_map": {tensor: shard file}}').get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f'{index}: expected a "weight_map" object of tensor name -> shard file name')
    for shard in sorted(set(weight_map.values())):
        parts = PurePosixPath(shard).parts
        if not parts or PurePosixPath(shard).is_absolute() or Path(shard).is_absolute() or ".." in parts:
            raise CheckpointError(f"{index} names the shard {shard!r} outside the model folder; refused")
    return [index.parent / shard for shard in sorted(set(weight_map.values()))]


def load_state_dict(folder: Path, sources: dict[str, Path] | None = None) -> dict[str, torch.Tensor]:
    """Every weight tensor in the folder, by its Hugging Face name (shards merged); `sources`, when
    given, is filled with the file each tensor came from."""
    for name in WEIGHT_FILES:
        index = folder / f"{name}.index.json"
        files = [folder / name] if (folder / name).is_file() else _shards(index) if index.is_file() else []
        if files:
            state: dict[str, torch.Tensor] = {}
            for file in files:
                part = _load_one(file)
                state.update(part)
                if sources is not None:
                    sources.update(dict.fromkeys(part, file))
            return state
    raise FileNotFoundError(
        f"{folder} has no weights: expected one of {[*WEIGHT_FILES, *(f'{n}.index.json' for n in WEIGHT_FILES)]}"
    )


def check_shapes(folder: Path, hf_cfg: Any, state: dict[str, torch.Tensor], sources: dict[str, Path]) -> None:
    """Raise CheckpointError naming the file, tensor, expected and found shape of weights that do not fit
    config.json (the expected shapes come from the transformers model built on the meta device). Called
    to explain a failed conversion; returns when it finds no mismatch."""
    try:
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            hf_model = AutoModelForCausalLM.from_config(hf_cfg)
    except Exception:  # the config itself is what transformers rejects: the caller's error stands
        return
    expected = hf_model.state_dict()
    prefix = getattr(hf_model, "base_model_prefix", "")
    order = {name: i for i, name in enumerate(expected)}
    wrong = []  # (position in the model, name in the file, expected shape, found shape)
    for key, tensor in state.items():
        name = key if key in expected else f"{prefix}.{key}"
        if name in expected and expected[name].shape != tensor.shape:
            wrong.append((order[name], key, list(expected[name].shape), list(tensor.shape)))
    if wrong:
        _, key, want, found = min(wrong)  # the first in the model's order: the embedding before the blocks
        more = f" ({len(wrong) - 1} more tensors differ)" if len(wrong) > 1 else ""
        raise CheckpointError(
            f"{sources.get(key, folder)}: tensor {key} has shape {found}, but {folder / CONFIG_FILE} gives "
            f"{want}{more}: the weights and config.json do not belong together"
        )
