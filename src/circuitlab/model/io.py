"""Saving and loading models: a folder with `config.json` and `model.safetensors`.

`save` writes only those two files and never removes anything else; it refuses a folder that is not a
circuitlab model folder (a training run, a Hugging Face folder, a folder of other files) unless told to
`overwrite`. Each file is written to a temporary name in the folder and renamed into place, weights
first, config last. config.json records a hash of the weights, which the weights file also carries in
its header: a save killed between the two renames is recognised on load, which then reads the new
config from its complete temporary file. So a kill at any moment leaves the old model or the new one
loadable, never a silent mix. Loading never unpickles: weights come through safetensors only.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..files import write_temp
from .config import HookedTransformerConfig

if TYPE_CHECKING:
    from .transformer import HookedTransformer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
OWN_FILES = (CONFIG_FILE, WEIGHTS_FILE)
FORMAT = "circuitlab.HookedTransformer"
HASH_KEY = "weights_sha256"
HEADER_KEY = "circuitlab"  # one metadata key: safetensors writes several in random order


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, corrupt, or not matching its config."""


def weights_hash(state: dict[str, torch.Tensor]) -> str:
    """sha256 of the tensors' names, dtypes, shapes and bytes: the same weights give the same hash."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().contiguous().cpu()
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def _temps(path: Path) -> list[Path]:
    return sorted(p for name in OWN_FILES for p in path.glob(f".{name}.*.tmp"))


def _check_target(path: Path, overwrite: bool) -> None:
    from ..runs import is_run_dir

    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} is a file: model.save writes a folder (config.json + model.safetensors)")
    if not path.is_dir():
        return
    if is_run_dir(path):
        raise FileExistsError(
            f"{path} is a training run directory (its config.json describes the run): save the model into "
            f"{path / 'final'}, where the run keeps its final model, or into a new folder"
        )
    if overwrite or _is_model_folder(path):
        return
    temps = _temps(path)
    if others := sorted(p.name for p in path.iterdir() if p not in temps):
        raise FileExistsError(
            f"{path} is not a circuitlab model folder (it holds {others[:6]}); model.save refuses to write "
            "there: choose a new folder, or pass overwrite=True to replace only its config.json and "
            "model.safetensors"
        )


def _is_model_folder(path: Path) -> bool:
    try:
        data = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def _settle(path: Path) -> None:
    """Finish a save killed between its two renames (its config is complete in a temporary file), then
    remove the temporaries of interrupted saves."""
    try:
        source, _ = _config_data(path)
    except CheckpointError:
        source = None
    if source is not None and source != path / CONFIG_FILE:
        os.replace(source, path / CONFIG_FILE)
    for tmp in _temps(path):
        tmp.unlink(missing_ok=True)


def save_model(model: HookedTransformer, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write `path/config.json` and `path/model.safetensors` (see the module docstring); nothing else in
    `path` is touched. Folders are created 0755 and files 0644 (under umask 022)."""
    path = Path(path)
    _check_target(path, overwrite)
    path.mkdir(parents=True, exist_ok=True)
    _settle(path)
    state = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
    digest = weights_hash(state)
    header = {HEADER_KEY: json.dumps({"format": FORMAT, HASH_KEY: digest}, sort_keys=True)}
    config = json.dumps({"format": FORMAT, HASH_KEY: digest, "config": model.cfg.to_dict()}, indent=2, sort_keys=True)
    weights_tmp = write_temp(path / WEIGHTS_FILE, lambda tmp: save_file(state, tmp, metadata=header))
    try:
        config_tmp = write_temp(path / CONFIG_FILE, lambda tmp: Path(tmp).write_text(config))
    except BaseException:
        weights_tmp.unlink()
        raise
    os.replace(weights_tmp, path / WEIGHTS_FILE)  # killed after this: load finds the config in config_tmp
    os.replace(config_tmp, path / CONFIG_FILE)
    return path


def _read_object(config_path: Path) -> dict[str, Any]:
    try:
        data = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{config_path} is corrupt or invalid: {err}") from err
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{config_path} holds a JSON {type(data).__name__ if data is not None else 'null'}, not an object: "
            f'expected the {{"format": "{FORMAT}", "config": {{...}}}} that model.save writes'
        )
    if data.get("format") != FORMAT:
        raise CheckpointError(f"{config_path} is not a circuitlab config (format {data.get('format')!r})")
    if not isinstance(data.get("config"), dict):
        raise CheckpointError(
            f"{config_path} has no 'config' section (an object with the model's fields such as n_layers, "
            "d_model): it was not written by model.save or was edited"
        )
    return data


def _header_hash(weights: Path) -> str | None:
    try:
        with safe_open(str(weights), "pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights} is corrupt or truncated: {err}") from err
    try:
        return json.loads(metadata.get(HEADER_KEY, "{}")).get(HASH_KEY)
    except (json.JSONDecodeError, AttributeError) as err:
        raise CheckpointError(f"{weights} has a corrupt {HEADER_KEY!r} header entry: {err}") from err


def _config_data(path: Path) -> tuple[Path, dict[str, Any]]:
    """(file, contents) of the config that belongs to `path/model.safetensors`: config.json, or the
    complete temporary config of a save killed between its renames."""
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{path} is not a circuitlab checkpoint: {CONFIG_FILE} is missing (save with model.save)")
    data = _read_object(config_path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        return config_path, data
    found = _header_hash(weights)
    if data.get(HASH_KEY) == found:
        return config_path, data
    for tmp in sorted(path.glob(f".{CONFIG_FILE}.*.tmp")):
        try:
            candidate = _read_object(tmp)
        except CheckpointError:
            continue  # a temporary cut short by a kill
        if found is not None and candidate.get(HASH_KEY) == found:
            return tmp, candidate
    raise CheckpointError(
        f"{weights} does not belong to {config_path} (weights hash {str(found)[:12]}, the config records "
        f"{str(data.get(HASH_KEY))[:12]}): the files come from different saves; save the model again"
    )


def read_config(path: str | Path) -> HookedTransformerConfig:
    config_path, data = _config_data(Path(path))
    try:
        return HookedTransformerConfig.from_dict(data["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{config_path} is corrupt or invalid: {err}") from err


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 2**62


def check_fits(cfg: HookedTransformerConfig, source: str | Path) -> None:
    """Raise CheckpointError, before anything is allocated, when the model `cfg` describes needs more
    memory than this machine has (an absurd n_ctx, d_model or d_vocab in a file)."""
    from .transformer import HookedTransformer

    with torch.device("meta"):  # shapes only, no memory (and no seeding of the global RNG)
        shape_cfg = copy.copy(cfg)
        shape_cfg.init_weights = False
        meta = HookedTransformer(shape_cfg, move_to_device=False)
    n_params = sum(p.numel() for p in meta.parameters())
    need = sum(t.numel() * t.element_size() for t in [*meta.parameters(), *meta.buffers()])
    have = _memory_bytes()
    if need > have:
        tensors = [*meta.named_parameters(), *meta.named_buffers()]
        name, biggest = max(tensors, key=lambda item: item[1].numel())
        raise CheckpointError(
            f"{source}: this config has {n_params:,} parameters; with its buffers it needs {need / 2**30:,.1f} GiB, "
            f"more than this machine's {have / 2**30:,.1f} GiB of memory (largest: {name} {list(biggest.shape)}); "
            "check n_ctx, d_model, d_vocab and n_layers"
        )


def load_model(path: str | Path, device: str | torch.device | None = None) -> HookedTransformer:
    from .transformer import HookedTransformer

    path = Path(path)
    cfg = read_config(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{path} has no {WEIGHTS_FILE}")
    check_fits(cfg, path / CONFIG_FILE)
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
