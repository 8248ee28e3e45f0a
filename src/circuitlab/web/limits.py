"""Bounds on what one request may cost: body size, computation time, and how many computations may queue.

Time: every computation runs in a worker thread under a deadline. While it runs, the model copy it computes
on carries a forward pre-hook on each of its modules (`deadline_checks`, installed for that computation and
removed after it) that raises `ComputationTimeout` once the thread's deadline has passed, so an over-long
computation stops at the next layer and frees its worker; the request itself waits at most the time limit
(plus a short grace) whatever happens in the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

T = TypeVar("T")
_local = threading.local()
_GRACE_S = 1.0  # the request gives the worker this long past its deadline to notice and stop


@dataclass(frozen=True)
class Limits:
    """max_body_bytes: largest request body (413 above); time_limit_s: the most one computation may run
    (504 past it); workers: computations run at once; max_pending: computations running or queued
    (503 beyond)."""

    max_body_bytes: int = 64 * 1024
    time_limit_s: float = 30.0
    workers: int = 2
    max_pending: int = 8

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "workers", "max_pending"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name}={getattr(self, name)} is invalid: expected a positive integer")
        if not self.time_limit_s >= 0:
            raise ValueError(f"Limits.time_limit_s={self.time_limit_s} is invalid: expected seconds >= 0")


class ComputationTimeout(RuntimeError):
    """A computation ran past its deadline."""


class Busy(RuntimeError):
    """Too many computations are running or queued."""


def check_deadline() -> None:
    """Raise `ComputationTimeout` if the current thread runs under a deadline that has passed."""
    deadline = getattr(_local, "deadline", None)
    if deadline is not None and time.monotonic() >= deadline:
        raise ComputationTimeout("deadline passed")


def has_deadline() -> bool:
    """Whether the current thread runs under a deadline (inside a `Worker`)."""
    return getattr(_local, "deadline", None) is not None


@contextlib.contextmanager
def deadline_checks(model: torch.nn.Module) -> Iterator[None]:
    """Inside the block, every module of `model` checks the running thread's deadline before it runs.

    The hooks are removed when the block ends, so `model` keeps nothing; in a thread without a deadline
    nothing is installed."""
    if not has_deadline():
        yield
        return
    handles = [module.register_forward_pre_hook(_check_before_module) for module in model.modules()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _check_before_module(_module: torch.nn.Module, _args: Any) -> None:
    check_deadline()


class Worker:
    """Runs blocking computations in a thread pool, each under the time limit, with a bounded queue."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._pool: ThreadPoolExecutor | None = None  # started on first use, again after `close`
        self._lock = threading.Lock()
        self.pending = 0  # submitted and not finished (running or queued)

    def _run(self, fn: Callable[[], T], deadline: float) -> T:
        _local.deadline = deadline
        try:
            check_deadline()  # queued past its deadline: do not start
            return fn()
        finally:
            _local.deadline = None

    def _done(self, _future: Future) -> None:
        with self._lock:
            self.pending -= 1

    async def run(self, fn: Callable[[], T]) -> T:
        """The result of fn() computed in a worker; `Busy` when the queue is full, `ComputationTimeout` when
        it runs past the time limit (counted from submission)."""
        with self._lock:
            if self.pending >= self.limits.max_pending:
                raise Busy(f"{self.pending} computations are already running or queued")
            self.pending += 1
        limit = self.limits.time_limit_s
        deadline = time.monotonic() + limit
        try:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.limits.workers, thread_name_prefix="circuitlab-web")
                pool = self._pool
            future = pool.submit(self._run, fn, deadline)
        except BaseException:
            with self._lock:
                self.pending -= 1
            raise
        future.add_done_callback(self._done)  # also called when a queued job is cancelled
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout=limit + _GRACE_S)
        except TimeoutError as err:
            future.cancel()  # still queued: never starts; running: stops at its next module call
            raise ComputationTimeout(f"no result within {limit:g} s") from err

    def close(self) -> None:
        """Stop the threads (queued computations are cancelled); a later `run` starts new ones, so an app
        can be served again after its lifespan ended."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


class BodySizeLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413 before the app sees it.

    Checks the Content-Length header and, for chunked bodies, counts the bytes as they arrive (the body
    is buffered, which is fine at the small limits a lab needs)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._reject(send, declared.decode("latin-1"))
            return
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._reject(send, f"more than {size}")
                return
            if not message.get("more_body", False):
                break

        async def replay() -> dict:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send: Callable, size: str) -> None:
        from starlette.responses import JSONResponse

        detail = (
            f"request body too large ({size} bytes): the limit is {self.max_bytes} bytes "
            "(circuitlab serve --max-body-bytes); send a shorter prompt"
        )
        response = JSONResponse({"detail": detail}, status_code=413)
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> dict:
    return {"type": "http.disconnect"}
