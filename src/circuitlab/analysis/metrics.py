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


# ---- metrics written for one run (TransformerLens style) -----------------------------------------
class PerRunMetric:
    """A metric written for one run, `fn(logits [batch, pos, vocab]) -> 0-d` (TransformerLens style), applied
    to each patch variant in turn. `read_positions`: the positions `fn` reads (see `probe_positions`), so the
    sweeps unembed only those; None: all. `base_logits` fill the positions it does not read."""

    def __init__(
        self, fn: Metric, read_positions: list[int] | None = None, base_logits: torch.Tensor | None = None
    ) -> None:
        self.fn, self.read_positions = fn, read_positions
        self._buffer = None if base_logits is None else base_logits.detach().clone()

    def _one(self, logits: torch.Tensor) -> torch.Tensor:
        value = torch.as_tensor(self.fn(logits))
        if value.numel() != 1:
            raise ValueError(
                f"the metric returned shape {tuple(value.shape)} for one run's logits {tuple(logits.shape)}: a "
                "TransformerLens-style metric must return one number (e.g. a mean over the batch)"
            )
        return value.reshape(()).to(torch.float64)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """logits [..., batch, pos, vocab] -> [...]."""
        if logits.ndim == 3:
            return self._one(logits)
        flat = logits.reshape(-1, *logits.shape[-3:])
        return torch.stack([self._one(x) for x in flat]).view(logits.shape[:-3])

    def evaluate(self, logits: torch.Tensor, positions: list[int]) -> torch.Tensor:
        """logits [variant, batch, len(positions), vocab] at `positions` -> [variant]."""
        if self._buffer is None:
            raise ValueError("a PerRunMetric with read positions needs base_logits to fill the other positions")
        values = []
        for variant in logits:
            self._buffer[:, positions] = variant
            values.append(self._one(self._buffer))
        return torch.stack(values)


def probe_positions(fn: Metric, logits: torch.Tensor) -> list[int] | None:
    """The positions a one-run metric reads, found on the logits [batch, pos, vocab] of a real run: those
    where its gradient is nonzero, kept only if replacing every other position by noise leaves the metric's
    value exactly unchanged (twice, different noise); None (read all) otherwise or when it has no gradient."""
    logits = logits.detach()
    x = logits.clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            value = torch.as_tensor(fn(x))
            if not value.requires_grad or value.numel() != 1:
                return None
            (grad,) = torch.autograd.grad(value.sum(), x, allow_unused=True)
    except (RuntimeError, TypeError, ValueError):
        return None
    if grad is None:
        return None
    read = grad.abs().sum((0, 2)).nonzero().flatten().tolist()
    if not read or len(read) == logits.shape[1]:
        return None
    other = [p for p in range(logits.shape[1]) if p not in read]
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        before = torch.as_tensor(fn(logits)).detach()
        for scale in (1.0, 100.0):
            noisy = logits.clone()
            noise = torch.randn(noisy[:, other].shape, generator=gen, dtype=torch.float32)
            noisy[:, other] = noise.to(noisy.dtype).to(noisy.device) * scale
            if not torch.equal(torch.as_tensor(fn(noisy)).detach(), before):
                return None
    return read


def is_batched(metric: Metric) -> bool:
    """Whether a metric takes stacked logits [variant, batch, pos, vocab] (circuitlab's metrics do)."""
    return isinstance(metric, (PositionMetric, Loss, PerRunMetric)) or getattr(metric, "batched", False)


def adapt(metric: Metric, logits: torch.Tensor) -> Metric:
    """`metric` ready for the batched sweeps, given one base run's logits [batch, pos, vocab]: circuitlab's
    metrics as they are; a function that maps two stacked runs to their two values as well; any other (a
    TransformerLens-style metric of one run) wrapped in a `PerRunMetric` with its read positions probed."""
    if is_batched(metric):
        return metric
    with torch.no_grad():
        try:
            one = torch.as_tensor(metric(logits))
            two = torch.as_tensor(metric(torch.stack([logits, logits])))
            if one.ndim == 0 and two.shape == (2,) and torch.equal(two, torch.stack([one, one]).to(two.dtype)):
                return metric
        except (IndexError, RuntimeError, TypeError, ValueError):
            pass
    return PerRunMetric(metric, probe_positions(metric, logits), logits)
