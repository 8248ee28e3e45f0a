"""Opening what `circuitlab train` writes (a run directory), a saved model (`model.save`) or a Hugging
Face folder, for the report and the command line: `open_run(path)`, `load_model_or_run(path)`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import HookedTransformer
    from .tasks import Task


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def is_run_dir(path: str | Path) -> bool:
    """A folder with the config.json of a training run (model, task and training sections)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and {"model", "task", "training"} <= data.keys()


@dataclass
class Run:
    """A training run directory: its config, metrics rows and checkpoints, loaded lazily."""

    path: Path
    config: dict[str, Any]
    checkpoints: list[tuple[int, Path]] = field(default_factory=list)

    @cached_property
    def metrics(self) -> list[dict[str, Any]]:
        from .viz.training import read_metrics

        return read_metrics(self.path) if (self.path / "metrics.jsonl").is_file() else []

    def task(self) -> Task | None:
        """The run's task rebuilt from its config, or None where it cannot be (a task needing a tokenizer)."""
        from .tasks import make_task

        params = {k: v for k, v in self.config["task"].items() if k != "name"}
        if params.get("tokenizer"):
            return None
        params.pop("tokenizer", None)
        try:
            return make_task(self.config["task"]["name"], **params)
        except (TypeError, ValueError):
            return None

    def model(self) -> HookedTransformer:
        """The final model (final/), else the latest checkpoint's weights."""
        from .model import HookedTransformer

        if (self.path / "final" / "config.json").is_file():
            return HookedTransformer.load(self.path / "final")
        if not self.checkpoints:
            raise ValueError(f"{self.path} has neither final/ nor a checkpoint: was the run stopped before step 1?")
        return self.model_at(self.checkpoints[-1][0])

    def model_at(self, step: int) -> HookedTransformer:
        """The weights of the checkpoint written after `step` optimiser steps."""
        from .model import HookedTransformer, HookedTransformerConfig
        from .training.checkpoints import load_checkpoint

        found = dict(self.checkpoints)
        if step not in found:
            raise ValueError(f"{self.path} has no checkpoint at step {step}; checkpoints: {sorted(found)}")
        from .model.io import check_fits

        cfg = HookedTransformerConfig.from_dict(self.config["model"])
        cfg.device = None
        check_fits(cfg, self.path / "config.json")
        model = HookedTransformer(cfg)
        load_checkpoint(found[step], model)
        return model.eval()


def open_run(path: str | Path) -> Run:
    """Open a run directory written by `circuitlab.training.train` / `circuitlab train`."""
    from .training.checkpoints import list_checkpoints

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a directory")
    if not is_run_dir(path):
        raise ValueError(f"{path} is not a run directory: it needs the config.json that `circuitlab train` writes")
    return Run(path, _read_json(path / "config.json"), list_checkpoints(path))


def load_model_or_run(path: str | Path) -> tuple[HookedTransformer, Run | None]:
    """A model from a run directory, a folder saved by `model.save`, or a Hugging Face folder
    (config.json with a model_type); the Run too when it is a run directory."""
    from .model import HookedTransformer

    path = Path(path)
    if path.is_file():
        raise ValueError(f"{path} is a file: pass the folder that holds config.json")
    if not path.is_dir():
        raise FileNotFoundError(f"{path} not found: expected a run directory, a saved model or a Hugging Face folder")
    if is_run_dir(path):
        run = open_run(path)
        return run.model(), run
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{path} has no config.json: expected a run directory, a saved model or a Hugging Face folder")
    config = _read_json(config_path)
    if config.get("format") == "circuitlab.HookedTransformer":
        return HookedTransformer.load(path), None
    if "model_type" in config or "architectures" in config:
        return HookedTransformer.from_pretrained(path), None
    raise ValueError(
        f"{config_path} is neither a circuitlab run or model config nor a Hugging Face config (no model_type)"
    )
