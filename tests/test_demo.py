"""The README's demo trains the induction model, names its heads and checks the twin."""

from __future__ import annotations

import re
from pathlib import Path

from circuitlab import demo


def test_demo_end_to_end(tmp_path: Path, capsys) -> None:
    demo.main(["--out", str(tmp_path / "demo"), "--steps", "400", "--no-progress"])
    out = capsys.readouterr().out
    assert re.search(r"L1H\d\s+induction", out), out
    assert "identical logits = True" in out
    twin_error = float(re.search(r"max \|logit difference\| vs torch ([0-9.e+-]+)", out).group(1))
    assert twin_error < 1e-4
    assert (tmp_path / "demo" / "census.csv").exists() and (tmp_path / "demo" / "metrics.jsonl").exists()
    report = tmp_path / "demo" / "report.html"
    assert f"report (one self-contained HTML file, opens offline): {report}" in out
    html = report.read_text()
    assert "Head census" in html and "Role trajectories over training" in html and "<script src" not in html
