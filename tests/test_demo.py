"""The README's demo runs and reports agreement between torch, NumPy and a reloaded checkpoint."""

from __future__ import annotations

import re

from circuitlab import demo


def test_demo_runs_and_agrees(capsys) -> None:
    demo.main()
    out = capsys.readouterr().out
    assert "identical logits = True" in out
    twin_error = float(re.search(r"max \|logit difference\| vs torch ([0-9.e+-]+)", out).group(1))
    assert twin_error < 1e-10
    assert re.search(r"L1H3: previous-token [0-9.]+ \(uniform [0-9.]+\), induction", out)
