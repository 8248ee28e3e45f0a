"""A quick language model on a corpus slice, and the two natural-language studies in quick mode on it."""

from __future__ import annotations

import json

import pytest

from circuitlab import HookedTransformer
from circuitlab.studies import run_study
from circuitlab.studies.fine_tune_circuits import SCORES, trajectory_complete
from circuitlab.text import TextTask, lm_loss
from circuitlab.text.lm import QUICK_TASK, quick_text_run

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def run_dir():
    return quick_text_run()  # shared with the studies' quick modes: trained once per process


def test_quick_training_beats_the_unigram_baseline(run_dir) -> None:
    report = json.loads((run_dir / "lm_report.json").read_text())
    assert report["heldout_loss"] < report["unigram_loss"] - 0.3, report
    assert report["bigram_loss"] < report["unigram_loss"]
    assert set(report["samples"]) and all(isinstance(s, str) and s for s in report["samples"].values())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["heldout.loss"] < rows[0]["heldout.loss"] - 1.0 and "heldout.icl" in rows[-1]
    # the exported Hugging Face folder is the trained model: same held-out loss through from_pretrained
    loaded = HookedTransformer.from_pretrained(run_dir / "hf")
    task = TextTask(**QUICK_TASK)
    again = lm_loss(loaded, task.tiled("heldout"))
    assert again.loss == pytest.approx(report["heldout_loss"], abs=1e-4)
    assert loaded.tokenizer is not None and len(loaded.tokenizer) == QUICK_TASK["vocab_size"]


def test_natural_induction_quick(run_dir, tmp_path) -> None:
    verdict = run_study("natural-induction", tmp_path, quick=True)
    data = json.loads((tmp_path / "verdict.json").read_text())
    assert data["study"] == "natural-induction"
    assert {c["name"] for c in data["checks"]} >= {"beats unigram", "ICL score", "induction heads"}
    assert next(c for c in verdict.checks if c.name == "beats unigram").passed
    trajectory = json.loads((tmp_path / "trajectory.json").read_text())
    from circuitlab.training import list_checkpoints

    assert [r["step"] for r in trajectory] == [s for s, _ in list_checkpoints(run_dir)]
    assert all(len(r["heads"]) == 8 and r["heldout_loss"] > 0 for r in trajectory)
    assert len(data["measurements"]["heads"]) == 8
    # no induction head in 120 steps: the precondition fails, so the claim was not tested (never FAIL)
    best = data["measurements"]["best_induction"]
    assert best["head"] in trajectory[0]["heads"] and best["step"] in [r["step"] for r in trajectory]
    if not data["measurements"]["induction_heads"]:
        assert data["verdict"] == "INCONCLUSIVE" and "not tested" in data["explanation"]
    assert (tmp_path / "census_random_tokens.json").is_file() and "plotly" in (tmp_path / "report.html").read_text()


def test_fine_tune_circuits_quick_writes_complete_trajectories(run_dir, tmp_path) -> None:
    verdict = run_study("fine-tune-circuits", tmp_path, quick=True)
    for task in ("most_frequent", "repeated_tokens"):
        traj = json.loads((tmp_path / task / "trajectory.json").read_text())
        written = sorted(int(p.stem.split("_")[1]) for p in (tmp_path / task / "run" / "checkpoints").iterdir())
        assert traj["checkpoint_steps"] == written and [c["step"] for c in traj["checkpoints"]] == written
        for row in traj["checkpoints"]:
            assert len(row["heads"]) == 8 and row["heldout_loss"] > 0 and row["task_loss"] > 0
            assert all(set(h["scores"]) == set(SCORES) and h["ablation"] is not None for h in row["heads"].values())
        assert trajectory_complete(traj) == 1.0
        assert {f["fate"] for f in traj["fates"].values()} <= {"kept", "changed", "died", "born", "none"}
        assert next(c for c in verdict.checks if c.name == f"{task}: trajectory complete").passed
    html = (tmp_path / "report.html").read_text()
    assert html.count("<figure") >= 2 * (8 + 1)  # a trajectory figure per head per task, and the loss curves


def test_cli_train_text_writes_a_hugging_face_model_and_report(tmp_path, capsys) -> None:
    from circuitlab.cli import main

    slice_params = ["--task-param", "vocab_size=512", "--task-param", "length=32", "--task-param", "max_chars=300000"]
    argv = ["train", "text", "--preset", "tiny-lm", *slice_params, "--d-model", "32", "--n-heads", "2", "--steps", "4",
            "--eval-every", "2", "--log-checkpoints", "0", "--checkpoint-every", "2", "--out", str(tmp_path / "run"),
            "--no-progress", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "held-out loss" in out and "unigram" in out and "ROMEO." in out
    report = json.loads((tmp_path / "run" / "lm_report.json").read_text())
    assert {"heldout_loss", "unigram_loss", "bigram_loss", "icl_score", "samples"} <= set(report)
    model = HookedTransformer.from_pretrained(tmp_path / "run" / "hf")
    assert model.cfg.d_model == 32 and model.cfg.act_fn == "gelu_new" and model.tokenizer is not None
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 2, 4] and all("heldout.loss" in r for r in rows)


def test_train_text_preset_writes_what_the_cli_writes(tmp_path, monkeypatch) -> None:
    """Studies train missing language models through `text.lm.train_text_preset`, never through the CLI."""
    import dataclasses

    from circuitlab.text.lm import train_text_preset
    from circuitlab.training import presets

    tiny = presets.PRESETS["tiny-lm"]
    short = {**tiny.training, "steps": 2, "eval_every": 2, "batch_size": 2}
    monkeypatch.setitem(presets.PRESETS, "tiny-lm-2", dataclasses.replace(tiny, training=short))
    report = train_text_preset(tmp_path / "run", "tiny-lm-2")
    assert {"heldout_loss", "icl_score"} <= set(report)
    assert (tmp_path / "run" / "hf" / "config.json").is_file() and (tmp_path / "run" / "lm_report.json").is_file()


def test_nothing_below_the_cli_imports_it() -> None:
    """Data flows one way: the CLI sits on top, and no library module calls it."""
    import re
    from pathlib import Path

    import circuitlab

    root = Path(circuitlab.__file__).parent
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if "cli" not in path.relative_to(root).parts
        and re.search(r"from \.+cli\b|import circuitlab\.cli|from circuitlab\.cli", path.read_text())
    ]
    assert offenders == []
