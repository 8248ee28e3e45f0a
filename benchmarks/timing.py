"""Shared timing helper of the benchmarks: candidates interleaved, so machine noise hits all alike."""

from __future__ import annotations

import time
from collections.abc import Callable


def time_calls(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each candidate over `repeats` rounds, after one warm-up call each."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times
