"""Model copies private to one computation at a time, so that concurrent requests share no state.

A computation on the served model adds hooks (caching, patching, the deadline checks), may take the slow
attention path because something is hooked, and uses the tokenizer, whose padding / truncation settings
a fast `transformers` tokenizer changes on every call. Two requests on one model object see each other's
hooks and race on that state. Each computation therefore borrows a copy of its own: the copies have their
own modules, hook points, config and tokenizer, and share the parameter and buffer tensors, which the lab
only reads. A copy costs its Python modules, not its weights; the pool holds at most one copy per
computation running at once (the worker threads), and the served model itself is never computed on.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Iterator

from ..model import HookedTransformer
from .limits import deadline_checks


def private_copy(model: HookedTransformer) -> HookedTransformer:
    """A copy of `model` in eval mode with its own modules, hook points, config and tokenizer, sharing the
    parameter and buffer tensors (so it sees the same weights and costs no weight memory)."""
    shared: dict[int, object] = {id(t): t for t in (*model.parameters(), *model.buffers())}
    if model.tokenizer is not None:
        shared[id(model.tokenizer)] = copy.deepcopy(model.tokenizer)
    replica = copy.deepcopy(model, shared)
    replica.reset_hooks()  # temporary hooks the original had at copy time are not ours
    return replica.eval()


class ReplicaPool:
    """Private copies of one model, lent to one computation at a time."""

    def __init__(self, model: HookedTransformer) -> None:
        self.model = model
        self._idle: list[HookedTransformer] = []
        self._lock = threading.Lock()
        self.size = 0  # copies made so far (idle or lent)

    @contextlib.contextmanager
    def borrow(self) -> Iterator[HookedTransformer]:
        """A copy no other computation uses until the block ends; inside a worker, its modules check the
        thread's deadline while the block runs."""
        with self._lock:
            replica = self._idle.pop() if self._idle else None
        if replica is None:
            replica = private_copy(self.model)
            with self._lock:
                self.size += 1
        try:
            with deadline_checks(replica):
                yield replica
        finally:
            replica.reset_hooks()  # a computation stopped half-way leaves nothing behind
            with self._lock:
                self._idle.append(replica)
