"""Periodic sequences (the Séminaire Turing task): BOS, then a random pattern of period f repeated.

f is drawn per sequence from [min_period, max_period]; tokens come from [first_token, vocab) (0 pad,
1 start, 2 end are reserved as in the report). Every next-token prediction is scored: the first
period is unpredictable, so it sets a floor on the loss, as in the original experiment.

`n_sequences` = N trains on a fixed dataset of N sequences (drawn once from `dataset_seed`), as the
report does (8192 sequences, 10 epochs): each batch draws N-set rows at random (with replacement, so
`steps * batch / N` is the expected number of epochs). None samples fresh sequences every batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import Batch, Task, lm_targets


@dataclass
class Periodic(Task):
    name: ClassVar[str] = "periodic"
    vocab: int = 100
    length: int = 91
    min_period: int = 15
    max_period: int = 30
    bos: int = 1
    first_token: int = 3
    n_sequences: int | None = None
    dataset_seed: int = 0

    def __post_init__(self) -> None:
        self._check(2 <= self.min_period <= self.max_period, "min_period", "need 2 <= min_period <= max_period")
        self._check(self.length > self.max_period + 1, "length", f"must exceed max_period + 1 = {self.max_period + 1}")
        self._check(
            self.vocab > self.first_token + 1, "vocab", f"must leave tokens above first_token={self.first_token}"
        )
        self._check(
            self.n_sequences is None or self.n_sequences >= 1, "n_sequences", "expected a positive size or None"
        )
        self._pool: Batch | None = None

    @property
    def d_vocab(self) -> int:
        return self.vocab

    @property
    def seq_len(self) -> int:
        return self.length

    def _generate(self, batch_size: int, gen: torch.Generator) -> Batch:
        if self.n_sequences is None:
            return self._sample(batch_size, gen)
        if self._pool is None:
            self._pool = self._sample(self.n_sequences, torch.Generator().manual_seed(self.dataset_seed))
        rows = torch.randint(0, self.n_sequences, (batch_size,), generator=gen)
        pool = self._pool
        return Batch(
            pool.tokens[rows], pool.targets[rows], pool.loss_mask[rows], {k: v[rows] for k, v in pool.metadata.items()}
        )

    def _sample(self, batch_size: int, gen: torch.Generator) -> Batch:
        period = torch.randint(self.min_period, self.max_period + 1, (batch_size, 1), generator=gen)  # [batch, 1]
        pattern = torch.randint(self.first_token, self.vocab, (batch_size, self.max_period), generator=gen)
        pos = torch.arange(1, self.length)[None, :]  # positions after BOS
        body = pattern.gather(1, (pos - 1) % period)  # [batch, length - 1]
        tokens = torch.cat([torch.full((batch_size, 1), self.bos), body], dim=1)
        loss_mask = torch.ones_like(tokens, dtype=torch.bool)
        loss_mask[:, -1] = False  # nothing follows the last token
        all_pos = torch.arange(self.length)[None, :]
        prev = torch.where(all_pos > period, all_pos - period, torch.full_like(all_pos, -1))
        return Batch(tokens, lm_targets(tokens), loss_mask, {"period": period[:, 0], "prev_occurrence": prev})
