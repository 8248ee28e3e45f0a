"""The templated name-copy task: the answer is the last name after the earlier mention of the asked first
name, and the corrupted prompt differs at that last name only."""

from __future__ import annotations

import pytest
import torch

from circuitlab.tasks import NameCopy, make_task


def test_answer_is_the_word_after_the_earlier_mention() -> None:
    task = make_task("name_copy")
    batch = task.generate(256, seed=3)
    rows = torch.arange(len(batch))
    end = batch.metadata["end_pos"]
    asked = batch.tokens[rows, end]  # the first name named again
    earlier = (batch.tokens == asked[:, None]) & (torch.arange(batch.tokens.shape[1])[None] < end[:, None])
    assert (earlier.sum(1) == 1).all(), "the asked first name appears exactly once before"
    after = earlier.int().argmax(1) + 1
    assert torch.equal(batch.tokens[rows, after], batch.metadata["answer"])
    assert torch.equal(after, batch.metadata["answer_pos"])
    assert torch.equal(batch.targets[rows, end], batch.metadata["answer"])
    assert torch.equal(batch.loss_mask.sum(1), torch.ones(len(batch), dtype=torch.long))
    assert batch.loss_mask[rows, end].all()
    # every person is asked for sometimes, in every template
    assert len(set(batch.metadata["answer_pos"].tolist())) >= task.n_people


def test_every_persons_name_positions_are_recorded() -> None:
    task = make_task("name_copy")
    batch = task.generate(64, seed=4)
    rows = torch.arange(len(batch))[:, None]
    first_pos, last_pos = batch.metadata["first_pos"], batch.metadata["last_pos"]  # [batch, person]
    assert first_pos.shape == last_pos.shape == (len(batch), task.n_people)
    firsts, lasts = batch.tokens[rows, first_pos], batch.tokens[rows, last_pos]
    assert torch.isin(firsts, task.first_ids).all() and torch.isin(lasts, task.last_ids).all()
    assert (firsts.sort(1).values.diff(dim=1) != 0).all(), "the people's first names are distinct"
    assert (lasts == batch.metadata["answer"][:, None]).sum(1).eq(1).all()  # the answer is one person's
    assert (last_pos == batch.metadata["answer_pos"][:, None]).any(1).all()


def test_corruption_swaps_only_the_answer() -> None:
    task = NameCopy()
    batch = task.generate(128, seed=0)
    corrupted = batch.metadata["corrupted_tokens"]
    diff = batch.tokens != corrupted
    assert (diff.sum(1) == 1).all()
    rows = torch.arange(len(batch))
    assert diff[rows, batch.metadata["answer_pos"]].all()
    assert torch.equal(corrupted[rows, batch.metadata["answer_pos"]], batch.metadata["distractor"])
    assert not (batch.tokens == batch.metadata["distractor"][:, None]).any(), "the distractor is a fresh name"


def test_fixed_layout_and_seeds() -> None:
    task = NameCopy(templates=NameCopy().templates[:1], asked=2)
    a, b = task.generate(16, seed=1), task.generate(16, seed=1)
    assert torch.equal(a.tokens, b.tokens)
    assert (a.metadata["answer_pos"] == a.metadata["answer_pos"][0]).all()
    text = task.decode(a.tokens[0])
    assert text.startswith("<bos> her name was") and text.split()[-1] == text.split()[text.split().index("friend") + 2]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(templates=("hello {F1} {L1} {Q}",)), "at least 2 people"),
        (dict(templates=("{F1} {L1} and {F2} {L2} {Q} .",)), "must end with"),
        (dict(templates=("{F1} {L1} and {F2} {L2} {Q}", "{F1} {L1} {Q}")), "same number of people"),
        (dict(asked=3), "asked"),
        (dict(last_names=("A", "B", "C")), "last_names"),
    ],
)
def test_bad_parameters_say_what_is_wrong(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        NameCopy(**kwargs)
