"""Tasks to train on: each a dataclass whose `generate(batch_size, seed)` returns a `Batch`.

`make_task("repeated_tokens", length=64)` builds one by name; `TASKS` lists them.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
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
    _check_params(TASKS[name], params)
    return TASKS[name](**params)


_SIMPLE = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _fits(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _check_params(cls: type, params: dict[str, Any]) -> None:
    """Unknown parameter names, and values of the wrong simple type (int, float, bool, str, or None where
    allowed), raise a ValueError naming the parameter and the type it wants."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: hints.get(f.name) for f in dataclasses.fields(cls) if f.init}
    for key, value in params.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"task {cls.name!r} has no parameter {key!r}; {hint}its parameters: {sorted(fields)}")
        hint = fields[key]
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        kinds = [k for k in options if k in _SIMPLE]
        if not kinds or (value is None and type(None) in options):
            continue  # a tuple, Any, a tokenizer...: the task checks it itself
        if not any(_fits(value, k) for k in kinds):
            wanted = " or ".join(_SIMPLE[k] for k in kinds) + (" or null" if type(None) in options else "")
            raise ValueError(f"task parameter {key}={value!r} is invalid: {cls.name} wants {wanted} for {key}")


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
