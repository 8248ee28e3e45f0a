"""The induction-circuit-discovery study end to end in quick mode."""

from __future__ import annotations

import json
from pathlib import Path

from circuitlab.studies import STUDIES, run_study


def test_quick_induction_circuit_discovery(tmp_path: Path) -> None:
    assert "induction-circuit-discovery" in STUDIES
    verdict = run_study("induction-circuit-discovery", tmp_path, seeds=1, quick=True)
    data = json.loads((tmp_path / "verdict.json").read_text())
    assert data["verdict"] == "PASS" and verdict.passed and data["quick"] is True  # the full claim, on one seed
    names = [c["name"] for c in data["checks"]]
    assert names[-1] == "eap-ig_roc_auc_worst" and len(names) == 10
    seed = data["measurements"]["per_seed"][0]
    assert any(e.endswith("<k>") for e in seed["agreed_circuit"])
    for method in ("eap", "eap-ig", "acdc"):
        found = seed[method]
        assert found["n_edges"] == len(found["edges"]) and 0 < found["edge_fraction"] <= 1
        # The quick run trains the full 600 steps: the K-composition edge is found, faithfully, in few edges.
        assert found["has_k_composition"] == 1.0 and found["faithfulness"] >= 0.9, method
        assert found["edge_fraction"] <= 0.5, method
    html = (tmp_path / "report.html").read_text()
    assert "acdc circuit" in html and "Faithfulness of the top-k edges" in html
