"""circuitlab turns on PyTorch's huge-page allocation for large CPU tensors (fewer page faults)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import os, resource, sys
import torch
import circuitlab  # before the first tensor: torch reads THP_MEM_ALLOC_ENABLE at its first allocation
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    x = torch.ones(25_000_000)  # 100 MB, touched
    del x
print(os.environ.get("THP_MEM_ALLOC_ENABLE"), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
"""


def _probe(env: dict[str, str]) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, check=True, capture_output=True, text=True)
    value, faults = out.stdout.split()
    return value, int(faults)


def test_import_enables_huge_pages_unless_the_user_chose() -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    on_value, on_faults = _probe(env)
    off_value, off_faults = _probe({**env, "THP_MEM_ALLOC_ENABLE": "0"})
    assert (on_value, off_value) == ("1", "0")
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not thp.exists() or "[never]" in thp.read_text():
        pytest.skip("transparent huge pages are off on this machine: only the setting is checked")
    # 500 MB touched: ~122k faults on 4 KiB pages; with 2 MiB pages, a few hundred plus the rest of Python
    assert off_faults > 100_000
    assert on_faults < off_faults / 5
