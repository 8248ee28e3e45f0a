"""Patching metrics: logits [..., batch, pos, vocab] -> one number per leading index (a mean over the batch).

A single run gives logits [batch, pos, vocab] and a 0-d value; the batched patching sweeps hand a metric
logits [variant, batch, pos, vocab] and get [variant] back. `PositionMetric`s read one position per row
(default the last, or per-row end positions such as IOI's `end_pos`); the sweeps use that to unembed
only the positions read.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

Pos = int | torch.Tensor


class Metric(Protocol):
    def __call__(self, logits: torch.Tensor) -> torch.Tensor: ...


def select_pos(x: torch.Tensor, pos: Pos) -> torch.Tensor:
    """x [..., batch, pos, d] at one position per row -> [..., batch, d]; `pos` an int or [batch] tensor."""
    if isinstance(pos, int):
        return x[..., pos, :]
    pos = torch.as_tensor(pos, device=x.device)
    if pos.ndim == 0:
        return x[..., int(pos), :]
    n_pos = x.shape[-2]
    pos = torch.where(pos < 0, pos + n_pos, pos)  # negative per-row positions count from the end
    index = pos[:, None, None].expand(*x.shape[:-3], pos.shape[0], 1, x.shape[-1])
    return x.gather(-2, index).squeeze(-2)


def _token_ids(ids: int | torch.Tensor, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(ids, device=device).long()


def _logit_of(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """logits [..., batch, vocab], ids [] or [batch] -> [..., batch]."""
    if ids.ndim == 0:
        return logits[..., ids]
    return logits.gather(-1, ids[:, None].expand(*logits.shape[:-1], 1)).squeeze(-1)


class PositionMetric:
    """A metric of the logits at one position per row: `reduce(logits [..., batch, vocab]) -> [...]`."""

    def __init__(self, pos: Pos = -1) -> None:
        self.pos = pos

    def reduce(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return self.reduce(select_pos(logits, self.pos))


class LogitDiff(PositionMetric):
    """Mean over the batch of logit[answer] - logit[distractor]."""

    def __init__(self, answer: int | torch.Tensor, distractor: int | torch.Tensor, pos: Pos = -1) -> None:
        super().__init__(pos)
        self.answer, self.distractor = torch.as_tensor(answer), torch.as_tensor(distractor)

    def reduce(self, logits: torch.Tensor) -> torch.Tensor:
        a = _logit_of(logits, _token_ids(self.answer, logits.device))
        d = _logit_of(logits, _token_ids(self.distractor, logits.device))
        return (a - d).mean(-1)  # [...]


class NormalizedLogitDiff(LogitDiff):
    """(logit diff - corrupted) / (clean - corrupted): 0 at the corrupted baseline, 1 at the clean one."""

    def __init__(
        self,
        answer: int | torch.Tensor,
        distractor: int | torch.Tensor,
        clean: float,
        corrupted: float,
        pos: Pos = -1,
    ) -> None:
        super().__init__(answer, distractor, pos)
        if clean == corrupted:
            raise ValueError(f"clean and corrupted logit differences are equal ({clean}): cannot normalise")
        self.clean, self.corrupted = float(clean), float(corrupted)

    def reduce(self, logits: torch.Tensor) -> torch.Tensor:
        return (super().reduce(logits) - self.corrupted) / (self.clean - self.corrupted)


class AnswerProb(PositionMetric):
    """Mean over the batch of softmax(logits)[answer]."""

    def __init__(self, answer: int | torch.Tensor, pos: Pos = -1) -> None:
        super().__init__(pos)
        self.answer = torch.as_tensor(answer)

    def reduce(self, logits: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits.double() if logits.dtype == torch.float64 else logits.float(), dim=-1)
        return _logit_of(probs, _token_ids(self.answer, logits.device)).mean(-1).to(logits.dtype)


class Loss:
    """Mean cross-entropy of the predictions `targets[b, p]` made at positions where `mask` is on
    (the `Batch.targets` / `Batch.loss_mask` convention); all positions but the last by default."""

    def __init__(self, targets: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        if targets.ndim != 2:
            raise ValueError(f"targets must be [batch, pos], got shape {tuple(targets.shape)}")
        if mask is None:
            mask = torch.ones_like(targets, dtype=torch.bool)
            mask[:, -1] = False
        if mask.shape != targets.shape:
            raise ValueError(f"mask {tuple(mask.shape)} must match targets {tuple(targets.shape)}")
        self.targets, self.mask = targets.long(), mask.bool()

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        targets, mask = self.targets.to(logits.device), self.mask.to(logits.device)
        log_probs = F.log_softmax(logits if logits.dtype == torch.float64 else logits.float(), dim=-1)
        nll = -log_probs.gather(-1, targets[..., None].expand(*logits.shape[:-1], 1)).squeeze(-1)  # [..., b, p]
        per = (nll * mask).sum((-2, -1)) / mask.sum().clamp(min=1)
        return per.to(logits.dtype)


def logit_diff(answer: int | torch.Tensor, distractor: int | torch.Tensor, pos: Pos = -1) -> LogitDiff:
    """Metric: mean logit[answer] - logit[distractor] at `pos` (an int, or per-row positions [batch])."""
    return LogitDiff(answer, distractor, pos)


def normalized_logit_diff(
    answer: int | torch.Tensor,
    distractor: int | torch.Tensor,
    clean: float | torch.Tensor,
    corrupted: float | torch.Tensor,
    pos: Pos = -1,
) -> NormalizedLogitDiff:
    """Metric: 0 = corrupted, 1 = clean. `clean` / `corrupted` are the baseline logit differences, or the
    clean and corrupted runs' logits [batch, pos, vocab] (their logit differences are taken)."""
    raw = LogitDiff(answer, distractor, pos)

    def baseline(value: float | torch.Tensor) -> float:
        if isinstance(value, torch.Tensor) and value.ndim >= 3:
            return float(raw(value.detach()))
        return float(value)

    return NormalizedLogitDiff(answer, distractor, baseline(clean), baseline(corrupted), pos)


def answer_prob(answer: int | torch.Tensor, pos: Pos = -1) -> AnswerProb:
    """Metric: mean probability of `answer` at `pos`."""
    return AnswerProb(answer, pos)


def loss(targets: torch.Tensor, mask: torch.Tensor | None = None) -> Loss:
    """Metric: mean cross-entropy of `targets` [batch, pos] (prediction made at each position) under `mask`."""
    return Loss(targets, mask)


def next_token_loss(tokens: torch.Tensor) -> Loss:
    """Metric: the usual language-model loss of `tokens` [batch, pos] (position p predicts token p + 1)."""
    targets = torch.cat([tokens[:, 1:], torch.zeros_like(tokens[:, :1])], dim=1)
    return Loss(targets)
