"""Repeated random tokens: the task on which induction heads form (Olsson et al. 2022).

Layout of one sequence: BOS, filler, chunk, gap filler, the chunk again, filler. Chunk length, start
and gap are drawn per sequence, so the distance between the two copies varies: a fixed distance is
solved by a fixed-offset head without any induction. All non-repeated tokens in a sequence are
distinct, so only the second copy is predictable; the loss mask scores exactly those predictions
(every token of the second copy after its first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import Batch, Task, distinct_tokens, lm_targets


@dataclass
class RepeatedTokens(Task):
    """vocab: tokens 1..vocab-1 (0 is BOS); seq_len: tokens per sequence including BOS;
    chunk lengths in [min_chunk, max_chunk]; gap between the copies in [0, max_gap]."""

    name: ClassVar[str] = "repeated_tokens"
    vocab: int = 64
    length: int = 48
    min_chunk: int = 6
    max_chunk: int = 16
    max_gap: int = 8
    bos: int = 0

    def __post_init__(self) -> None:
        self._check(self.min_chunk >= 2, "min_chunk", "need at least 2 tokens for one to be predictable")
        self._check(self.max_chunk >= self.min_chunk, "max_chunk", f"must be >= min_chunk={self.min_chunk}")
        self._check(self.max_gap >= 0, "max_gap", "must be >= 0")
        self._check(
            self.length >= 1 + 2 * self.max_chunk + self.max_gap,
            "length",
            f"must fit BOS + 2 * max_chunk + max_gap = {1 + 2 * self.max_chunk + self.max_gap} tokens",
        )
        self._check(self.vocab - 1 >= self.length, "vocab", f"needs >= length + 1 = {self.length + 1} distinct tokens")

    @property
    def d_vocab(self) -> int:
        return self.vocab

    @property
    def seq_len(self) -> int:
        return self.length

    def _generate(self, batch_size: int, gen: torch.Generator) -> Batch:
        n = self.length
        chunk = torch.randint(self.min_chunk, self.max_chunk + 1, (batch_size, 1), generator=gen)  # [batch, 1]
        gap = torch.randint(0, self.max_gap + 1, (batch_size, 1), generator=gen)
        slack = n - 1 - 2 * chunk - gap  # room left for leading filler
        start1 = 1 + (torch.rand(batch_size, 1, generator=gen) * (slack + 1)).long()  # [batch, 1]
        start2 = start1 + chunk + gap
        offset = start2 - start1  # distance between the copies, varies per sequence

        pos = torch.arange(n)[None, :]  # [1, pos]
        in_repeat = (pos >= start2) & (pos < start2 + chunk)  # [batch, pos]
        base = torch.cat(
            [torch.full((batch_size, 1), self.bos), distinct_tokens(batch_size, n - 1, 1, self.vocab, gen)], dim=1
        )
        source = torch.where(in_repeat, pos - offset, pos)
        tokens = base.gather(1, source)
        # Scored: predictions whose target is a repeated token other than the copy's first.
        predictable = in_repeat & (pos > start2)  # by target position
        loss_mask = torch.cat([predictable[:, 1:], torch.zeros_like(predictable[:, :1])], dim=1)
        prev = torch.where(in_repeat, pos - offset, torch.full_like(pos, -1))  # earlier occurrence, or -1
        metadata = {
            "first_start": start1[:, 0],
            "repeat_start": start2[:, 0],
            "chunk_len": chunk[:, 0],
            "prev_occurrence": prev,
        }
        return Batch(tokens, lm_targets(tokens), loss_mask, metadata)
