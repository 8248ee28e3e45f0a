"""The board-state study end to end in quick mode: tic-tac-toe trained, probed and steered."""

from __future__ import annotations

import json
from pathlib import Path

import circuitlab.studies.board_state as board_state
from circuitlab.studies import STUDIES, run_study


def test_quick_board_state_study_writes_a_complete_verdict(tmp_path: Path) -> None:
    assert STUDIES["board-state"] is board_state.STUDY
    verdict = run_study("board-state", tmp_path, quick=True)
    data = json.loads((tmp_path / "verdict.json").read_text())
    names = [c["name"] for c in data["checks"]]
    assert names == [
        "tictactoe.legal_move_rate",
        "tictactoe.probe_gain_over_random",
        "tictactoe.steer_gain_over_random",
        "tictactoe.steer_counterfactual_legal",
    ]
    assert data["verdict"] == ("PASS" if verdict.passed else "FAIL") and data["quick"] is True
    m = data["measurements"]["tictactoe"]
    assert len(m["probe_by_layer"]["trained.mine_theirs"]) == len(m["hook_names"]) == 3  # embed + 2 layers
    for key, value in m["probe_best"].items():
        assert 0.0 <= value <= 1.0, key
    assert m["steer"]["n"] > 100 and 0 <= m["steer"]["left_square_steer"] <= 1
    # What the study is about holds even in the quick run: legal play, a board readable by a linear probe
    # far better than from a random-init model, and steering that moves the model off the steered square.
    assert m["legal_move_rate"] > 0.95
    assert m["probe_best"]["trained.mine_theirs"] > m["probe_best"]["random.mine_theirs"] + 0.05
    assert m["steer"]["suppressed_steer"] > m["steer"]["suppressed_random"] + 0.3
    page = (tmp_path / "report.html").read_text()
    assert "Heatmap" in page or "heatmap" in page
    assert "probe test accuracy per square" in page and "Claim" in page
