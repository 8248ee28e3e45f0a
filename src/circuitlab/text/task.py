"""`TextTask`: next-token prediction on windows of the tokenised corpus, for the ordinary trainer.

Each window is BOS (`<|endoftext|>`, id 0) followed by `length - 1` consecutive corpus tokens from a
random start; works are joined by the same token. Every prediction but the last is scored. The
token stream of a split is tokenised once and cached as `.npy` beside the tokenizer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..files import atomic_write
from ..tasks.base import Batch, Task, lm_targets
from .corpus import read_texts
from .tokenizer import EOS_ID, corpus_tokenizer, load_tokenizer


def tokenize_works(tokenizer: object, texts: list[str]) -> np.ndarray:
    """One stream: the works' tokens joined (and preceded) by EOS."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    return np.concatenate([np.array([EOS_ID, *seq], dtype=np.int64) for seq in ids])


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would add ".npy" to a name
        np.save(f, array)


@cache
def _stream(vocab_size: int, split: str, max_chars: int | None, root: str | None) -> torch.Tensor:
    folder = corpus_tokenizer(vocab_size, max_chars, root)
    path = folder / f"tokens-{split}.npy"
    if not path.is_file():
        stream = tokenize_works(load_tokenizer(folder), read_texts(split, max_chars, root))
        atomic_write(path, lambda tmp: _save_npy(tmp, stream.astype(np.uint16)))
    return torch.from_numpy(np.load(path).astype(np.int64))


def lm_batch(tokens: torch.Tensor) -> Batch:
    """Next-token prediction on windows [batch, pos]: every prediction but the last is scored."""
    mask = torch.ones_like(tokens, dtype=torch.bool)
    mask[:, -1] = False
    return Batch(tokens, lm_targets(tokens), mask)


@dataclass
class TextTask(Task):
    """vocab_size: BPE vocabulary; length: tokens per window (BOS included); split: train / heldout;
    max_chars: train on a slice of the corpus (tests); root: corpus folder (default `data/corpus`)."""

    name: ClassVar[str] = "text"
    vocab_size: int = 4096
    length: int = 256
    split: str = "train"
    max_chars: int | None = None
    root: str | None = None

    def __post_init__(self) -> None:
        self._check(self.length >= 2, "length", "need at least BOS and one token")
        self._check(self.split in ("train", "heldout"), "split", "expected 'train' or 'heldout'")
        self._check(self.vocab_size > 257, "vocab_size", "expected more than 257 (bytes + EOS)")

    @property
    def d_vocab(self) -> int:
        return self.vocab_size

    @property
    def seq_len(self) -> int:
        return self.length

    @property
    def tokenizer_dir(self) -> Path:
        return corpus_tokenizer(self.vocab_size, self.max_chars, self.root)

    def stream(self, split: str | None = None) -> torch.Tensor:
        """The whole tokenised split [n_tokens] (default: this task's split)."""
        return _stream(self.vocab_size, split or self.split, self.max_chars, self.root)

    def with_split(self, split: str) -> TextTask:
        return dataclasses.replace(self, split=split)

    def windows(self, starts: torch.Tensor, split: str | None = None) -> Batch:
        """Windows [BOS, stream[s : s + length - 1]] for each start s [batch]."""
        stream = self.stream(split)
        body = stream[starts[:, None] + torch.arange(self.length - 1)[None, :]]  # [batch, length - 1]
        batch = lm_batch(torch.cat([torch.full((len(starts), 1), EOS_ID), body], dim=1))
        batch.metadata["start"] = starts
        return batch

    def _generate(self, batch_size: int, gen: torch.Generator) -> Batch:
        n = len(self.stream()) - (self.length - 1)
        if n < 1:
            raise ValueError(f"the {self.split} split has fewer than {self.length} tokens: lower length")
        return self.windows(torch.randint(0, n, (batch_size,), generator=gen))

    def tiled(self, split: str = "heldout", max_windows: int | None = None) -> Batch:
        """Consecutive, non-overlapping windows covering the split (evenly thinned to `max_windows`)."""
        n = (len(self.stream(split)) - 1) // (self.length - 1)
        starts = torch.arange(n) * (self.length - 1)
        if max_windows is not None and n > max_windows:
            starts = starts[torch.linspace(0, n - 1, max_windows).round().long()]
        return self.windows(starts, split)


def tokenized_windows(
    tokenizer: object, split: str = "heldout", length: int = 256, max_windows: int | None = None, bos_id: int = EOS_ID
) -> torch.Tensor:
    """Consecutive windows [BOS, ...] [n, length] of a corpus split tokenised with any tokenizer (for example
    GPT-2's), works joined by `bos_id`: held-out text for a model that was not trained on our tokenizer."""
    ids = tokenizer(read_texts(split), add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    stream = torch.tensor([t for seq in ids for t in (bos_id, *seq)], dtype=torch.long)
    n = (len(stream) - 1) // (length - 1)
    starts = torch.arange(n) * (length - 1)
    if max_windows is not None and n > max_windows:
        starts = starts[torch.linspace(0, n - 1, max_windows).round().long()]
    body = stream[starts[:, None] + torch.arange(length - 1)[None, :]]
    return torch.cat([torch.full((len(starts), 1), bos_id), body], dim=1)
