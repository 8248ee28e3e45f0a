"""Most frequent token so far: at each position, output the token seen most often up to and including it.

Ties go to the smallest token id. Tokens are drawn uniformly from [first_token, vocab) (the report
used tokens 3-999 and length 60).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from .base import Batch, Task


@dataclass
class MostFrequent(Task):
    name: ClassVar[str] = "most_frequent"
    vocab: int = 20
    length: int = 32
    first_token: int = 3

    def __post_init__(self) -> None:
        self._check(
            self.vocab > self.first_token + 1, "vocab", f"must leave tokens above first_token={self.first_token}"
        )
        self._check(self.length >= 1, "length", "must be positive")

    @property
    def d_vocab(self) -> int:
        return self.vocab

    @property
    def seq_len(self) -> int:
        return self.length

    def _generate(self, batch_size: int, gen: torch.Generator) -> Batch:
        tokens = torch.randint(self.first_token, self.vocab, (batch_size, self.length), generator=gen)
        counts = F.one_hot(tokens, self.vocab).cumsum(dim=1)  # [batch, pos, vocab] counts so far
        targets = counts.argmax(dim=-1)  # first maximum: smallest token id on ties
        top = counts.max(dim=-1).values
        n_tied = (counts == top[..., None]).sum(-1)
        loss_mask = torch.ones_like(tokens, dtype=torch.bool)
        return Batch(tokens, targets, loss_mask, {"count": top, "n_tied": n_tied})
