"""Legality of a model's moves: the fraction of its top-1 predictions that are legal next tokens.

Works on any batch whose metadata holds `legal` [batch, pos, d_vocab] (the game tasks' batches), over
the positions its loss mask scores. `register_legal_move_rate` adds it to `train(..., metrics=...)`,
scored on held-out games (the task's test split) at every evaluation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch


def top1_legal(logits: torch.Tensor, legal: torch.Tensor) -> torch.Tensor:
    """[batch, pos] bool: whether the argmax of `logits` [batch, pos, vocab] is a legal token."""
    n_game_tokens = legal.shape[-1]
    top1 = logits.argmax(-1, keepdim=True)  # a token beyond the game's vocabulary is never legal
    return (legal.gather(-1, top1.clamp(max=n_game_tokens - 1)) & (top1 < n_game_tokens)).squeeze(-1)


def legal_move_rate(logits: torch.Tensor, batch: Any) -> float:
    """Fraction of the scored positions of `batch` where the model's top-1 next token is legal."""
    if "legal" not in batch.metadata:
        raise ValueError("batch.metadata has no 'legal' mask: legal_move_rate needs a game task's batch")
    ok = top1_legal(logits, batch.metadata["legal"].to(logits.device))
    mask = batch.loss_mask.to(logits.device)
    return float(ok[mask].float().mean()) if mask.any() else float("nan")


@torch.no_grad()
def model_legal_move_rate(model: torch.nn.Module, batch: Any, chunk: int = 256) -> float:
    """`legal_move_rate` of `model` on `batch`, run in chunks of games."""
    ok = torch.cat(
        [
            top1_legal(model(batch.tokens[i : i + chunk]), batch.metadata["legal"][i : i + chunk].to(model.device))
            for i in range(0, len(batch), chunk)
        ]
    )
    return float(ok[batch.loss_mask.to(ok.device)].float().mean())


def register_legal_move_rate(
    task: Any,
    metrics: dict[str, Callable] | None = None,
    name: str = "legal_move_rate",
    n_games: int = 512,
    seed: int = 0,
) -> dict[str, Callable]:
    """Add a metric recording the top-1 legal move rate on `n_games` held-out games at each evaluation."""
    metrics = dict(metrics or {})
    held_out = dataclasses.replace(task, split="test") if getattr(task, "holdout", 0) > 0 else task
    batch = held_out.generate(n_games, seed)

    def record(model: torch.nn.Module) -> float:
        return round(model_legal_move_rate(model, batch), 6)

    metrics[name] = record
    return metrics
