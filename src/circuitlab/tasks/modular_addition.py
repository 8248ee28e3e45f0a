"""Modular addition (the grokking task, Power et al. 2022; Nanda et al. 2023): "a b =" -> (a + b) mod p.

Tokens 0..p-1 are numbers and p is "=". The p^2 pairs are split once (by `split_seed`) into a train set
of `train_fraction` and a test set; `generate` samples from `split`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import Batch, Task


@dataclass
class ModularAddition(Task):
    name: ClassVar[str] = "modular_addition"
    p: int = 113
    train_fraction: float = 0.3
    split: str = "train"
    split_seed: int = 0

    def __post_init__(self) -> None:
        self._check(self.p >= 2, "p", "must be at least 2")
        self._check(0 < self.train_fraction < 1, "train_fraction", "must lie strictly between 0 and 1")
        self._check(self.split in ("train", "test", "all"), "split", "expected 'train', 'test' or 'all'")

    @property
    def d_vocab(self) -> int:
        return self.p + 1

    @property
    def seq_len(self) -> int:
        return 3

    def pairs(self) -> torch.Tensor:
        """The (a, b) pairs of this split: [n, 2]."""
        a, b = torch.meshgrid(torch.arange(self.p), torch.arange(self.p), indexing="ij")
        everything = torch.stack([a.flatten(), b.flatten()], dim=1)
        if self.split == "all":
            return everything
        order = torch.randperm(self.p**2, generator=torch.Generator().manual_seed(self.split_seed))
        n_train = round(self.train_fraction * self.p**2)
        return everything[order[:n_train] if self.split == "train" else order[n_train:]]

    def _generate(self, batch_size: int, gen: torch.Generator) -> Batch:
        pairs = self.pairs()
        ab = pairs[torch.randint(0, len(pairs), (batch_size,), generator=gen)]  # [batch, 2]
        tokens = torch.cat([ab, torch.full((batch_size, 1), self.p)], dim=1)
        targets = torch.zeros_like(tokens)
        targets[:, 2] = ab.sum(1) % self.p
        loss_mask = torch.zeros_like(tokens, dtype=torch.bool)
        loss_mask[:, 2] = True
        return Batch(tokens, targets, loss_mask, {"a": ab[:, 0], "b": ab[:, 1]})
