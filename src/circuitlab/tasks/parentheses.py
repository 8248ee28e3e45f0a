"""Balanced parentheses: read BOS + n brackets, output "balanced" or "unbalanced" at the last bracket.

Half the sequences are balanced (a random bracket string with equal counts, rotated to start after
its lowest prefix depth, which makes every prefix depth >= 0); the other half are random strings with
equal counts, mostly unbalanced and so hard negatives. Labels are always computed from the string.
Tokens: 0 BOS, 1 "(", 2 ")", 3 "unbalanced", 4 "balanced".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import Batch, Task

BOS, OPEN, CLOSE, UNBALANCED, BALANCED = range(5)


@dataclass
class BalancedParentheses(Task):
    name: ClassVar[str] = "balanced_parentheses"
    n_brackets: int = 20

    def __post_init__(self) -> None:
        self._check(self.n_brackets >= 2 and self.n_brackets % 2 == 0, "n_brackets", "expected an even number >= 2")

    @property
    def d_vocab(self) -> int:
        return 5

    @property
    def seq_len(self) -> int:
        return self.n_brackets + 1

    def _generate(self, batch_size: int, gen: torch.Generator) -> Batch:
        n = self.n_brackets
        steps = torch.ones(batch_size, n, dtype=torch.long)
        steps[:, n // 2 :] = -1  # equal numbers of opening (+1) and closing (-1)
        steps = steps.gather(1, torch.rand(batch_size, n, generator=gen).argsort(dim=1))  # shuffled
        depth = steps.cumsum(1)
        start = depth.argmin(dim=1, keepdim=True) + 1  # rotation after the lowest point is balanced
        rotated = steps.gather(1, (torch.arange(n)[None, :] + start) % n)
        make_balanced = torch.rand(batch_size, 1, generator=gen) < 0.5
        steps = torch.where(make_balanced, rotated, steps)
        depth = steps.cumsum(1)  # [batch, n]
        balanced = (depth >= 0).all(1) & (depth[:, -1] == 0)
        brackets = torch.where(steps > 0, OPEN, CLOSE)
        tokens = torch.cat([torch.full((batch_size, 1), BOS), brackets], dim=1)
        targets = torch.zeros_like(tokens)
        targets[:, -1] = torch.where(balanced, BALANCED, UNBALANCED)
        loss_mask = torch.zeros_like(tokens, dtype=torch.bool)
        loss_mask[:, -1] = True
        return Batch(tokens, targets, loss_mask, {"balanced": balanced, "depth": depth})
