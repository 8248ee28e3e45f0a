"""Games as training tasks: next-move prediction on random legal games, with held-out games for testing.

At position p the model predicts token p + 1 (the next move, PASS or END); every prediction up to END is
scored. Metadata carries what the probes and the legality metric need: `boards` [batch, pos, square]
(after each token), `to_move` [batch, pos], `legal` [batch, pos, d_vocab] (the legal next tokens) and
`outcome` [batch].

Held-out games: a game belongs to the test split when a hash of its tokens falls in the `holdout`
fraction, so `split="train"` (what the trainer sees) and `split="test"` (what `legal_move_rate` scores)
never share a game. Games are generated in chunks of consecutive seeds (one engine run for many
batches), which keeps `generate(batch, seed)` a function of (batch, seed) and shares the per-move overhead
of the engine loop among many small batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import torch

from ..games import PAD, Game, Games, Othello, TicTacToe
from .base import Batch, Task, lm_targets

_HASH_MOD = 1_000_003
_CHUNK_GAMES = 1024  # games drawn per engine run when batches are small


def game_hash(tokens: torch.Tensor) -> torch.Tensor:
    """[batch] int64 in [0, 1000): a fixed hash of each token row (a polynomial rolling hash, then mixed)."""
    powers = torch.full((tokens.shape[1],), 257, dtype=torch.long).cumprod(0) % _HASH_MOD
    h = (tokens.long() * powers).sum(1) % _HASH_MOD
    return (h * 2_654_435_761 % (1 << 32)) * 1000 >> 32


@dataclass
class GameTask(Task):
    """Base of the game tasks: `split` ('train' / 'test') and the `holdout` fraction of games kept for test."""

    name: ClassVar[str] = "game"
    holdout: float = 0.1
    split: str = "train"

    def __post_init__(self) -> None:
        self._check(self.split in ("train", "test", "all"), "split", "expected 'train', 'test' or 'all'")
        self._check(0 <= self.holdout < 1, "holdout", "expected a fraction in [0, 1)")
        self._check(self.split != "test" or self.holdout > 0, "split", "a test split needs holdout > 0")
        self.game  # noqa: B018  (builds the engine now, so bad game parameters fail here)

    @cached_property
    def game(self) -> Game:
        raise NotImplementedError

    @property
    def d_vocab(self) -> int:
        return self.game.d_vocab

    @property
    def seq_len(self) -> int:
        return self.game.seq_len

    def in_split(self, tokens: torch.Tensor) -> torch.Tensor:
        """[batch] bool: which games belong to this task's split."""
        test = game_hash(tokens) < round(self.holdout * 1000)
        return {"train": ~test, "test": test, "all": torch.ones_like(test)}[self.split]

    @property
    def _keep_rate(self) -> float:
        return {"train": 1 - self.holdout, "test": self.holdout, "all": 1.0}[self.split]

    def games(self, n: int, gen: torch.Generator) -> Games:
        """`n` random legal games of this split (drawn, then filtered by hash until there are enough)."""
        parts, have = [], 0
        while have < n:
            drawn = self.game.random_games(int((n - have) / self._keep_rate * 1.1) + 8, gen)
            kept = drawn.select(self.in_split(drawn.tokens))
            parts.append(kept)
            have += len(kept)
        return Games.cat(parts).select(torch.arange(n))

    def generate(self, batch_size: int, seed: int | torch.Generator = 0) -> Batch:
        ok = isinstance(batch_size, int) and batch_size > 0 and isinstance(seed, int)
        per_chunk = int(_CHUNK_GAMES * self._keep_rate) // batch_size if ok else 0
        if per_chunk > 1:  # consecutive seeds share one engine run
            chunk = self._chunk(batch_size, seed // per_chunk, per_chunk)
            rows = slice((seed % per_chunk) * batch_size, (seed % per_chunk + 1) * batch_size)
            return Batch(*(t[rows] for t in chunk[:3]), {k: v[rows] for k, v in chunk[3].items()})
        return super().generate(batch_size, seed)

    def _chunk(self, batch_size: int, index: int, per_chunk: int) -> tuple:
        key = (batch_size, index)
        cache = self.__dict__.setdefault("_chunk_cache", {})
        if key not in cache:
            gen = torch.Generator().manual_seed(1_000_003 * index + batch_size)
            batch = self._batch(self.games(batch_size * per_chunk, gen))
            cache.clear()  # one chunk at a time: the trainer walks through seeds in order
            cache[key] = (batch.tokens, batch.targets, batch.loss_mask, batch.metadata)
        return cache[key]

    def _generate(self, batch_size: int, gen: torch.Generator) -> Batch:
        return self._batch(self.games(batch_size, gen))

    def _batch(self, games: Games) -> Batch:
        targets = lm_targets(games.tokens)
        loss_mask = targets != PAD
        loss_mask[:, -1] = False  # nothing follows the last position
        targets = torch.where(loss_mask, targets, 0)
        metadata = {"boards": games.boards, "to_move": games.to_move, "legal": games.legal, "outcome": games.outcome}
        return Batch(games.tokens, targets, loss_mask, metadata)


@dataclass
class TicTacToeTask(GameTask):
    name: ClassVar[str] = "tictactoe"

    @cached_property
    def game(self) -> TicTacToe:
        return TicTacToe()


@dataclass
class OthelloTask(GameTask):
    name: ClassVar[str] = "othello"
    size: int = 6
    max_passes: int = 4

    @cached_property
    def game(self) -> Othello:
        return Othello(self.size, self.max_passes)
