"""Name copying on templated text: "her name was Alex Hart . his name was Sam Carroll . their friend was
Amy Reed . tomorrow at lunch time Alex" -> "Hart" (the style of Heimersheim's "Her name was Alex Hart.
Tomorrow at lunch time Alex" -> " Hart").

Several people are introduced and one of them is named again at the end, so the answer must be found by
matching the first name and copying the word after it (induction), not by position. The corrupted
prompt swaps the asked-for last name for a fresh one, so clean and corrupted differ at one position and
their answers are the two last names (the pair activation patching compares). Word-level vocabulary
(`WordVocab`); only the answer is scored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .base import Batch, Task, distinct_tokens, pad_templates
from .ioi import WordVocab

FIRST_NAMES = (
    "Alex",
    "Mary",
    "John",
    "Sam",
    "Kate",
    "Tom",
    "Anne",
    "Paul",
    "Lisa",
    "Mark",
    "Emma",
    "Jack",
    "Rose",
    "Eric",
    "Amy",
    "Dan",
    "Sarah",
    "Ben",
    "Lucy",
    "Max",
    "Ruth",
    "Joe",
    "Nina",
    "Adam",
)
LAST_NAMES = (
    "Hart",
    "Carroll",
    "Smith",
    "Jones",
    "Brown",
    "Taylor",
    "Wilson",
    "Clark",
    "Lewis",
    "Walker",
    "Young",
    "King",
    "Wright",
    "Green",
    "Baker",
    "Hill",
    "Moore",
    "Reed",
    "Cook",
    "Bell",
    "Ward",
    "Price",
    "Wood",
    "Gray",
)
DEFAULT_TEMPLATES = (
    "her name was {F1} {L1} . his name was {F2} {L2} . their friend was {F3} {L3} . tomorrow at lunch time {Q}",
    "i met {F1} {L1} , {F2} {L2} and {F3} {L3} at the party . later that day {Q}",
    "my friend is called {F1} {L1} . her sisters are {F2} {L2} and {F3} {L3} . on monday {Q}",
    "the teacher was {F1} {L1} , the doctor was {F2} {L2} and the cook was {F3} {L3} . we all said hello to {Q}",
)
_SLOT = re.compile(r"\{([FL])(\d+)\}|\{Q\}")


@dataclass
class NameCopy(Task):
    """templates: word-level text naming people {F1} {L1} ... {Fk} {Lk} (the same k in every template), ending
    with {Q}, the first name asked for; asked: which person (0-based) is named again, or None to draw it."""

    name: ClassVar[str] = "name_copy"
    first_names: tuple[str, ...] = FIRST_NAMES
    last_names: tuple[str, ...] = LAST_NAMES
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    asked: int | None = None

    def __post_init__(self) -> None:
        counts = {len(re.findall(r"\{F\d+\}", t)) for t in self.templates}
        self._check(len(counts) == 1, "templates", f"every template must name the same number of people, got {counts}")
        self.n_people = counts.pop()
        for t in self.templates:
            wanted = [f"{{{k}{i}}}" for i in range(1, self.n_people + 1) for k in "FL"] + ["{Q}"]
            self._check(all(t.count(w) == 1 for w in wanted), "templates", f"{t!r} needs each of {wanted} once")
            self._check(t.rstrip().endswith("{Q}"), "templates", f"{t!r} must end with {{Q}} (the answer follows)")
        self._check(self.n_people >= 2, "templates", "need at least 2 people, so the answer must be looked up")
        self._check(
            self.asked is None or 0 <= self.asked < self.n_people, "asked", f"expected None or 0..{self.n_people - 1}"
        )
        self._check(len(set(self.first_names)) >= self.n_people, "first_names", f"need >= {self.n_people} distinct")
        self._check(len(set(self.last_names)) > self.n_people, "last_names", f"need > {self.n_people} distinct")
        self.vocab = WordVocab(
            [_SLOT.sub(" ", t) for t in self.templates] + list(self.first_names) + list(self.last_names)
        )
        self.first_ids = torch.tensor([self.vocab.stoi[n] for n in self.first_names])
        self.last_ids = torch.tensor([self.vocab.stoi[n] for n in self.last_names])
        # slot codes: 0 plain word, 2i+1 first name of person i, 2i+2 last name, 2k+1 the asked first name
        rows, slot_rows = [], []
        for t in self.templates:
            ids, slots, at = [self.vocab.bos_token_id], [0], 0
            for m in _SLOT.finditer(t):
                words = self.vocab.encode(t[at : m.start()])
                ids, slots, at = ids + words, slots + [0] * len(words), m.end()
                code = (
                    2 * self.n_people + 1 if m.group(1) is None else 2 * (int(m.group(2)) - 1) + (m.group(1) == "L") + 1
                )
                ids, slots = [*ids, 0], [*slots, code]
            rows.append(ids)
            slot_rows.append(slots)
        self.table, self.slots, self.lengths = pad_templates(rows, slot_rows, pad=0)  # [template, pos], 0 = pad

    @property
    def d_vocab(self) -> int:
        return len(self.vocab)

    @property
    def seq_len(self) -> int:
        return self.table.shape[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "first_names": list(self.first_names),
            "last_names": list(self.last_names),
            "templates": list(self.templates),
            "asked": self.asked,
        }

    def _generate(self, batch_size: int, gen: torch.Generator) -> Batch:
        k = self.n_people
        template = torch.randint(0, len(self.templates), (batch_size,), generator=gen)
        first = self.first_ids[distinct_tokens(batch_size, k, 0, len(self.first_ids), gen)]  # [batch, person]
        last = self.last_ids[distinct_tokens(batch_size, k + 1, 0, len(self.last_ids), gen)]  # [batch, person + fresh]
        asked = torch.randint(0, k, (batch_size,), generator=gen)  # which person is named again
        if self.asked is not None:
            asked = torch.full_like(asked, self.asked)
        rows = torch.arange(batch_size)
        answer, fresh = last[rows, asked], last[:, k]
        slots, base = self.slots[template], self.table[template]

        def fill(lasts: torch.Tensor) -> torch.Tensor:
            people = torch.stack([first, lasts], dim=2).flatten(1)  # [batch, 2k]: F1 L1 F2 L2 ...
            values = torch.cat([base[:, :1], people, first[rows, asked][:, None]], dim=1)  # index = slot code
            return torch.where(slots > 0, values.gather(1, slots), base)

        tokens = fill(last[:, :k])
        corrupted_last = last[:, :k].clone()
        corrupted_last[rows, asked] = fresh
        end = self.lengths[template] - 1
        targets = torch.zeros_like(tokens)
        targets[rows, end] = answer
        loss_mask = torch.zeros_like(tokens, dtype=torch.bool)
        loss_mask[rows, end] = True
        metadata = {
            "corrupted_tokens": fill(corrupted_last),
            "answer": answer,
            "distractor": fresh,
            "end_pos": end,
            "answer_pos": (slots == 2 * asked[:, None] + 2).int().argmax(1),  # where the asked last name is
            "first_pos": self._slot_pos(slots, 1),  # [batch, person]: where each person's first name is
            "last_pos": self._slot_pos(slots, 2),  # and last name
            "template": template,
        }
        return Batch(tokens, targets, loss_mask, metadata)

    def _slot_pos(self, slots: torch.Tensor, offset: int) -> torch.Tensor:
        """[batch, person]: the position of slot code 2i + offset (1: first name of person i, 2: last name)."""
        codes = 2 * torch.arange(self.n_people) + offset  # [person]
        return (slots[:, None, :] == codes[None, :, None]).int().argmax(-1)

    def decode(self, tokens: torch.Tensor) -> str:
        return self.vocab.decode([int(t) for t in tokens if int(t) != 0])
