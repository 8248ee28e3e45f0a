"""Tasks to train on: each a dataclass whose `generate(batch_size, seed)` returns a `Batch`.

`make_task("repeated_tokens", length=64)` builds one by name; `TASKS` lists them.
"""

from __future__ import annotations

import difflib
from typing import Any

from .base import Batch, Task, masked_loss, per_position_loss
from .board_games import GameTask, OthelloTask, TicTacToeTask
from .ioi import IOI, WordVocab
from .modular_addition import ModularAddition
from .most_frequent import MostFrequent
from .name_copy import NameCopy
from .parentheses import BalancedParentheses
from .periodic import Periodic
from .repeated_tokens import RepeatedTokens

_TASK_CLASSES = (
    RepeatedTokens,
    Periodic,
    MostFrequent,
    IOI,
    ModularAddition,
    BalancedParentheses,
    NameCopy,
    TicTacToeTask,
    OthelloTask,
)
TASKS: dict[str, type[Task]] = {t.name: t for t in _TASK_CLASSES}
from ..text.task import TextTask  # noqa: E402  (real English: windows of the tokenised corpus)

TASKS[TextTask.name] = TextTask


def make_task(name: str, **params: Any) -> Task:
    """A task by its name with its parameters; an unknown name lists the valid ones."""
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=3)
        raise ValueError(f"unknown task {name!r}; did you mean {close}? Tasks: {sorted(TASKS)}")
    return TASKS[name](**params)


__all__ = [
    "IOI",
    "TASKS",
    "BalancedParentheses",
    "Batch",
    "GameTask",
    "ModularAddition",
    "MostFrequent",
    "NameCopy",
    "OthelloTask",
    "Periodic",
    "RepeatedTokens",
    "Task",
    "TicTacToeTask",
    "WordVocab",
    "make_task",
    "masked_loss",
    "per_position_loss",
]
