"""`TrainingConfig`: optimiser, schedule, evaluation and checkpoint settings of one training run."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any


@dataclass(kw_only=True)
class TrainingConfig:
    """AdamW with warm-up then a constant or cosine learning rate.

    Data for step s comes from a generator seeded by (seed, s), so a run is reproducible and a resumed
    run sees exactly the batches it would have seen. Evaluation runs every `eval_every` steps and at
    every checkpoint; checkpoints are written every `checkpoint_every` steps and at `n_log_checkpoints`
    log-spaced steps (to catch early phase changes), plus the first and last step.
    """

    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    schedule: str = "constant"
    min_lr_fraction: float = 0.0
    grad_clip: float | None = 1.0
    eval_every: int = 100
    eval_batches: int = 4
    eval_batch_size: int | None = None
    checkpoint_every: int | None = None
    n_log_checkpoints: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(name: str, allowed: str) -> ValueError:
            return ValueError(f"TrainingConfig.{name}={getattr(self, name)!r} is invalid: {allowed}")

        for name in ("steps", "batch_size", "eval_every", "eval_batches"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(name, "expected a positive integer")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise bad("lr", "expected a positive, finite learning rate")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise bad("weight_decay", "expected a finite number >= 0")
        if self.schedule not in ("constant", "cosine"):
            raise bad("schedule", "expected 'constant' or 'cosine'")
        if not 0 <= self.warmup_steps <= self.steps:
            raise bad("warmup_steps", f"expected between 0 and steps={self.steps}")
        if not 0 <= self.min_lr_fraction <= 1:
            raise bad("min_lr_fraction", "expected a fraction in [0, 1]")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise bad("grad_clip", "expected a positive norm or None")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise bad("checkpoint_every", "expected a positive integer or None")
        if self.n_log_checkpoints < 0:
            raise bad("n_log_checkpoints", "expected >= 0")
        self.betas = tuple(self.betas)  # JSON round trips give lists
        if self.eval_batch_size is None:
            self.eval_batch_size = self.batch_size

    def lr_at(self, step: int) -> float:
        """Learning rate for optimiser step `step` (0-based)."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        floor = self.min_lr_fraction
        return self.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    def checkpoint_steps(self) -> set[int]:
        """Steps (counted in completed optimiser steps) after which a checkpoint is written."""
        steps = {0, self.steps}
        if self.checkpoint_every:
            steps |= set(range(self.checkpoint_every, self.steps + 1, self.checkpoint_every))
        if self.n_log_checkpoints:
            n = self.n_log_checkpoints
            steps |= {round(self.steps ** (i / (n - 1))) if n > 1 else self.steps for i in range(n)}
        return steps

    def eval_steps(self) -> set[int]:
        return {0, self.steps} | set(range(self.eval_every, self.steps + 1, self.eval_every))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingConfig:
        return cls(**data)
