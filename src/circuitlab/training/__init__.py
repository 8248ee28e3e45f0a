"""Training: `train(model, task, TrainingConfig(...))`, run directories, checkpoints and metrics."""

from .checkpoints import list_checkpoints, load_checkpoint
from .config import TrainingConfig
from .metrics import MetricsLog, evaluate
from .presets import PRESETS, Preset, from_preset
from .trainer import TrainResult, data_seed, train

__all__ = [
    "PRESETS",
    "MetricsLog",
    "Preset",
    "TrainResult",
    "TrainingConfig",
    "data_seed",
    "evaluate",
    "from_preset",
    "list_checkpoints",
    "load_checkpoint",
    "train",
]
