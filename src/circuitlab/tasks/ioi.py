"""Indirect-object identification prompts (Wang et al. 2022), clean and corrupted (ABC) pairs.

"When Mary and John went to the store, John gave a drink to" -> " Mary". Each template names A and B
in its first clause and repeats the subject S (A or B) later; the answer is the indirect object IO,
the other one. The corrupted prompt puts a third name C where S was repeated (the "ABC" distribution
used for mean ablation), so clean and corrupted differ at one position only.

Tokenizer-agnostic: templates are encoded segment by segment once (names carry their leading
space, so a BPE tokenizer splits them the same way as the whole sentence); with no tokenizer a small
word-level vocabulary is built from the templates and names, for toy models. Generation is then a
vectorised fill of name slots. Prompts of different lengths are right-padded; `end_pos` marks the
position that predicts the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from .base import Batch, Task, distinct_tokens, pad_templates

DEFAULT_NAMES = (
    "Mary", "John", "Tom", "James", "Dan", "Sid", "Martin", "Amy", "Kate", "Paul", "Anne", "Mark", "Lisa",
    "Sarah", "Michael", "David", "Peter", "Emma", "Jack", "Alice", "Bob", "Rose", "Alex", "Adam", "Eric",
    "Ryan", "Sam", "Ben", "Joe", "Max",
)  # fmt: skip
DEFAULT_TEMPLATES = (
    "When {A} and {B} went to the store, {S} gave a drink to",
    "When {A} and {B} went to the park, {S} gave a ball to",
    "After {A} and {B} went to the shop, {S} gave a bag to",
    "Then, {A} and {B} went to the school. {S} gave a book to",
    "While {A} and {B} were working at the office, {S} gave a report to",
    "Friends {A} and {B} found a ring at the garden. {S} gave it to",
    "When {A} and {B} got a letter at the house, {S} decided to give it to",
    "Then, {A} and {B} had a long argument, and afterwards {S} said to",
)
SLOTS = {"A": 1, "B": 2, "S": 3}


class WordVocab:
    """A word-level vocabulary for toy models: '<pad>' 0, '<bos>' 1, then words and punctuation."""

    def __init__(self, texts: list[str]) -> None:
        words = sorted({w for text in texts for w in self.split(text)})
        self.itos = ["<pad>", "<bos>", *words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.pad_token_id, self.bos_token_id = 0, 1

    @staticmethod
    def split(text: str) -> list[str]:
        return re.findall(r"\w+|[^\w\s]", text)

    def encode(self, text: str) -> list[int]:
        return [self.stoi[w] for w in self.split(text)]

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.itos[i] for i in ids)

    def __len__(self) -> int:
        return len(self.itos)


def _encode(tokenizer: Any, text: str) -> list[int]:
    if isinstance(tokenizer, WordVocab):
        return tokenizer.encode(text)
    return list(tokenizer.encode(text, add_special_tokens=False))


@dataclass
class IOI(Task):
    """names and templates as above; `tokenizer` a Hugging Face tokenizer, or None for a word vocabulary."""

    name: ClassVar[str] = "ioi"
    names: tuple[str, ...] = DEFAULT_NAMES
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    prepend_bos: bool = True
    tokenizer: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for t in self.templates:
            self._check(
                all(t.count("{" + s + "}") == 1 for s in SLOTS),
                "templates",
                f"{t!r} needs {{A}}, {{B}}, {{S}} once each",
            )
        self._check(
            not any(t.endswith(("{A}", "{B}", "{S}")) for t in self.templates), "templates", "must end after the names"
        )
        if self.tokenizer is None:
            self.vocab = WordVocab([t.format(A="", B="", S="") for t in self.templates] + list(self.names))
        else:
            self.vocab = self.tokenizer
        # Names that are one token (with their leading space); others are skipped, as in the paper.
        name_ids = {n: _encode(self.vocab, (" " if self.tokenizer is not None else "") + n) for n in self.names}
        self.skipped_names = [n for n, ids in name_ids.items() if len(ids) != 1]
        self.used_names = [n for n, ids in name_ids.items() if len(ids) == 1]
        self._check(len(self.used_names) >= 3, "names", f"need 3 single-token names; multi-token: {self.skipped_names}")
        self.name_ids = torch.tensor([name_ids[n][0] for n in self.used_names])
        self._build_table()

    def _build_table(self) -> None:
        """Each template as ids with name slots: `table` [template, pos], `slots` [template, pos] (0 or A/B/S)."""
        bos = getattr(self.vocab, "bos_token_id", None)
        rows, slot_rows = [], []
        for template in self.templates:
            ids, slots = ([bos], [0]) if self.prepend_bos and bos is not None else ([], [])
            for piece in re.split(r"(\s?\{[ABS]\})", template):
                match = re.fullmatch(r"\s?\{([ABS])\}", piece)
                if match:
                    ids.append(0)
                    slots.append(SLOTS[match.group(1)])
                elif piece:
                    piece_ids = _encode(self.vocab, piece)
                    ids += piece_ids
                    slots += [0] * len(piece_ids)
            rows.append(ids)
            slot_rows.append(slots)
        pad = getattr(self.vocab, "pad_token_id", None)
        pad = pad if pad is not None else (getattr(self.vocab, "eos_token_id", None) or 0)
        self.table, self.slots, self.lengths = pad_templates(rows, slot_rows, pad)

    @property
    def d_vocab(self) -> int:
        return len(self.vocab)

    @property
    def seq_len(self) -> int:
        return self.table.shape[1]

    def to_dict(self) -> dict[str, Any]:
        name_or_path = getattr(self.tokenizer, "name_or_path", None)
        return {
            "name": self.name,
            "names": list(self.names),
            "templates": list(self.templates),
            "prepend_bos": self.prepend_bos,
            "tokenizer": None if self.tokenizer is None else str(name_or_path or type(self.tokenizer).__name__),
        }

    def _generate(self, batch_size: int, gen: torch.Generator) -> Batch:
        template = torch.randint(0, len(self.templates), (batch_size,), generator=gen)
        abc = self.name_ids[distinct_tokens(batch_size, 3, 0, len(self.used_names), gen)]  # [batch, 3] distinct
        a, b, c = abc.unbind(1)
        abba = torch.rand(batch_size, generator=gen) < 0.5  # S = B (IO = A) or S = A (IO = B)
        s, io = torch.where(abba, b, a), torch.where(abba, a, b)
        slots = self.slots[template]  # [batch, pos]
        base = self.table[template]

        def fill(s_name: torch.Tensor) -> torch.Tensor:
            filled = torch.where(slots == SLOTS["A"], a[:, None], base)
            filled = torch.where(slots == SLOTS["B"], b[:, None], filled)
            return torch.where(slots == SLOTS["S"], s_name[:, None], filled)

        tokens = fill(s)
        end = self.lengths[template] - 1  # predicts the answer
        rows = torch.arange(batch_size)
        targets = torch.zeros_like(tokens)
        targets[rows, end] = io
        loss_mask = torch.zeros_like(tokens, dtype=torch.bool)
        loss_mask[rows, end] = True
        a_pos, b_pos = (slots == SLOTS["A"]).int().argmax(1), (slots == SLOTS["B"]).int().argmax(1)
        metadata = {
            "corrupted_tokens": fill(c),  # ABC: a third name where S is repeated
            "answer": io,
            "distractor": s,
            "io_pos": torch.where(abba, a_pos, b_pos),
            "s1_pos": torch.where(abba, b_pos, a_pos),
            "s2_pos": (slots == SLOTS["S"]).int().argmax(1),
            "end_pos": end,
            "template": template,
            "abba": abba,
        }
        return Batch(tokens, targets, loss_mask, metadata)

    def decode(self, tokens: torch.Tensor) -> str:
        """Text of one prompt (padding dropped), for reading examples."""
        ids = [int(t) for t in tokens]
        return self.vocab.decode(ids)
