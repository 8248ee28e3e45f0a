"""What `circuitlab serve MODEL_OR_RUN` serves: a run directory, a saved model, a Hugging Face folder, or a
preset trained in memory (the default: `induction`, a few seconds on a CPU)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model import HookedTransformer
from ..tasks import Task, make_task

DEFAULT_PRESET = "induction"


@dataclass
class Served:
    """A model and where it came from; `task` is the task a run was trained on, when known."""

    model: HookedTransformer
    name: str
    kind: str  # "run", "model", "huggingface" or "preset"
    task: Task | None = None


def _task_from_run(config: dict[str, Any]) -> Task | None:
    params = dict(config.get("task") or {})
    name = params.pop("name", None)
    if name is None:
        return None
    try:
        return make_task(name, **params)
    except (TypeError, ValueError):  # a task saved by another version: serve the model without it
        return None


def load_served(target: str | Path | None = None, progress: bool = True, steps: int | None = None) -> Served:
    """Load MODEL_OR_RUN: a run directory (config.json + final/), a folder written by `model.save`, a Hugging
    Face folder, or a preset name (trained in memory for `steps`, default the preset's). None: the induction
    preset."""
    if target is None:
        target = DEFAULT_PRESET
    path = Path(target)
    if path.exists():
        if steps is not None:
            raise ValueError(f"steps={steps} applies to presets trained in memory, not to {path}")
        return _load_path(path)
    from ..training import PRESETS

    if str(target) in PRESETS:
        return _train_preset(str(target), progress, steps)
    raise ValueError(
        f"{target} is neither an existing path nor a preset name: pass a run directory (from `circuitlab train`), "
        f"a folder written by model.save, a Hugging Face model folder, or one of the presets {sorted(PRESETS)}"
    )


def _load_path(path: Path) -> Served:
    if not path.is_dir():
        raise ValueError(f"{path} is a file: pass the folder that holds config.json")
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ValueError(
            f"{path} has no config.json: expected a run directory (config.json + final/), a folder written by "
            "model.save (config.json + model.safetensors) or a Hugging Face model folder"
        )
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path} is not valid JSON: {err}") from err
    if isinstance(config, dict) and {"model", "task", "training"} <= set(config):  # a training run
        final = path / "final"
        if not (final / "config.json").is_file():
            raise ValueError(
                f"{path} is a training run without final/ (unfinished or interrupted): finish it with "
                f"`circuitlab train ... --out {path} --resume`"
            )
        return Served(HookedTransformer.load(final), path.name, "run", _task_from_run(config))
    if isinstance(config, dict) and config.get("format") == "circuitlab.HookedTransformer":
        return Served(HookedTransformer.load(path), path.name, "model")
    return Served(HookedTransformer.from_pretrained(path), path.name, "huggingface")


def _train_preset(name: str, progress: bool, steps: int | None) -> Served:
    from ..training import from_preset, train

    task, model_cfg, train_cfg = from_preset(name, training={} if steps is None else {"steps": steps})
    result = train(HookedTransformer(model_cfg), task, train_cfg, progress=progress)
    return Served(result.model, f"{name} preset (trained in memory, {result.step} steps)", "preset", task)
