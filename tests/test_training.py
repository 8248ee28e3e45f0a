"""The trainer: it learns induction (and a 1-layer model does not), resumes exactly after SIGKILL,
stops cleanly on Ctrl-C, and writes a well-formed run directory."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from circuitlab import CheckpointError, HookedTransformer
from circuitlab.cli import main as cli_main
from circuitlab.runs import open_run
from circuitlab.tasks import RepeatedTokens
from circuitlab.training import TrainingConfig, from_preset, list_checkpoints, train

TINY_TASK = dict(vocab=24, length=20, min_chunk=3, max_chunk=6, max_gap=3)
TINY_MODEL = dict(n_layers=2, n_heads=2, d_model=32, attn_only=True, normalization_type=None, seed=0)
TINY_TRAIN = dict(steps=40, batch_size=16, lr=3e-3, eval_every=10, eval_batches=1, checkpoint_every=10)


def _tiny() -> tuple[RepeatedTokens, HookedTransformer, TrainingConfig]:
    task = RepeatedTokens(**TINY_TASK)
    return task, HookedTransformer(task.model_config(**TINY_MODEL)), TrainingConfig(**TINY_TRAIN)


def test_two_layers_learn_induction_one_layer_does_not(trained_induction) -> None:
    task, two_layer = trained_induction
    _, model_cfg, train_cfg = from_preset("induction", model=dict(n_layers=1), training=dict(steps=400))
    one_layer = train(HookedTransformer(model_cfg), task, train_cfg, progress=False)
    assert two_layer.final["eval_loss"] < 0.3, two_layer.final["eval_loss"]
    # Same budget, one layer: no induction, the loss stays far higher.
    assert one_layer.final["eval_loss"] > 1.5, one_layer.final["eval_loss"]


def test_run_directory_and_metrics(tmp_path: Path) -> None:
    task, model, cfg = _tiny()
    calls = []

    def mean_attention_to_bos(m: HookedTransformer) -> dict[str, float]:
        calls.append(1)
        _, cache = m.run_with_cache(task.generate(4, 0).tokens, names_filter=lambda n: n.endswith("hook_pattern"))
        return {f"L{l}": cache["pattern", l][..., 0].mean().item() for l in range(2)}

    old_umask = os.umask(0o022)
    try:
        result = train(model, task, cfg, out_dir=tmp_path / "run", metrics={"bos": mean_attention_to_bos},
                       progress=False)  # fmt: skip
    finally:
        os.umask(old_umask)
    run = tmp_path / "run"
    for p in [run, *run.rglob("*")]:  # folders 0755, files 0644, final/ included
        assert stat.S_IMODE(p.stat().st_mode) == (0o755 if p.is_dir() else 0o644), p
    config = json.loads((run / "config.json").read_text())
    assert config["task"]["name"] == "repeated_tokens" and config["training"]["steps"] == 40
    assert config["model"]["n_layers"] == 2
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 10, 20, 30, 40] and rows == result.history
    for row in rows:
        assert row["tokens_seen"] == row["step"] * 16 * 20
        assert len(row["loss_per_position"]) == 20 and row["loss_per_position"][0] is None
        assert {"bos.L0", "bos.L1", "eval_loss", "train_loss", "lr"} <= set(row)
    assert rows[0]["train_loss"] is None and rows[-1]["eval_loss"] < rows[0]["eval_loss"]
    assert len(calls) == 5
    assert [s for s, _ in list_checkpoints(run)] == [0, 10, 20, 30, 40]
    reloaded = HookedTransformer.load(run / "final")
    tokens = task.generate(2, 5).tokens
    torch.testing.assert_close(reloaded(tokens), model(tokens))
    with pytest.raises(FileExistsError, match="resume"):
        train(_tiny()[1], task, cfg, out_dir=run, progress=False)
    with pytest.raises(ValueError, match=r"config differs in \['training'\]"):
        train(_tiny()[1], task, TrainingConfig(**{**TINY_TRAIN, "lr": 1e-3}), out_dir=run, resume=True, progress=False)
    config["model"]["n_ctx"] = 10**12  # a corrupt run config: refused before allocating the checkpoint's model
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config\.json: this config has .* GiB"):
        open_run(run).model_at(10)


CHILD = """
import os, signal, sys, torch
torch.set_num_threads({threads})
sys.path.insert(0, {tests!r})
from circuitlab.training import checkpoints, train
from test_training import _tiny
real_save = checkpoints.save_file
def dying_save(tensors, path, metadata=None):
    if '"step": 30' in metadata[checkpoints.HEADER_KEY]:  # half a file under its temporary name, then SIGKILL
        open(path, "wb").write(b"partial")
        os.kill(os.getpid(), signal.SIGKILL)
    real_save(tensors, path, metadata=metadata)
checkpoints.save_file = dying_save
task, model, cfg = _tiny()
train(model, task, cfg, out_dir={run!r}, progress=False)
"""


def test_resume_after_sigkill_mid_save_reaches_the_same_weights_and_files(tmp_path: Path) -> None:
    task, model, cfg = _tiny()
    reference = train(model, task, cfg, out_dir=tmp_path / "reference", progress=False)

    run = tmp_path / "run"
    code = CHILD.format(threads=torch.get_num_threads(), tests=str(Path(__file__).parent), run=str(run))
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert [s for s, _ in list_checkpoints(run)] == [0, 10, 20]  # the half-written one is not visible
    assert any(p.name.endswith(".tmp") for p in (run / "checkpoints").iterdir())
    (run / ".final.x1y2z3w4.tmp").mkdir()  # what model.save of older versions left when killed
    (run / ".final.x1y2z3w4.tmp" / "model.safetensors").write_bytes(b"stale")

    task, fresh, cfg = _tiny()
    resumed = train(fresh, task, cfg, out_dir=run, resume=True, progress=False)
    assert resumed.step == 40
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]  # stale temporaries removed
    # Every checkpoint and the final model equal the uninterrupted run's, byte for byte.
    ref_files = sorted(p.relative_to(tmp_path / "reference") for p in (tmp_path / "reference").rglob("*.safetensors"))
    assert ref_files == sorted(p.relative_to(run) for p in run.rglob("*.safetensors")) and len(ref_files) == 6
    for name in ref_files:
        assert (tmp_path / "reference" / name).read_bytes() == (run / name).read_bytes(), name
    for (name, a), b in zip(reference.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 10, 20, 30, 40]
    assert rows == json.loads(json.dumps(reference.history))  # same numbers as the uninterrupted run


def test_ctrl_c_stops_after_a_checkpoint_and_resumes(tmp_path: Path) -> None:
    task, model, cfg = _tiny()
    reference = train(model, task, cfg, progress=False)

    def press_ctrl_c(m: HookedTransformer) -> float:
        if len(seen) == 2:  # during the eval at step 10
            os.kill(os.getpid(), signal.SIGINT)
        seen.append(1)
        return 0.0

    seen: list[int] = []
    task, model, cfg = _tiny()
    cfg.eval_every = 5
    cfg_dict = cfg.to_dict()
    stopped = train(model, task, cfg, out_dir=tmp_path / "run", metrics={"probe": press_ctrl_c}, progress=False)
    assert stopped.interrupted and stopped.step == 10
    assert [s for s, _ in list_checkpoints(tmp_path / "run")][-1] == 10
    task, model, _ = _tiny()
    resumed = train(
        model, task, TrainingConfig(**cfg_dict), out_dir=tmp_path / "run", resume=True,
        metrics={"probe": lambda m: 0.0}, progress=False,
    )  # fmt: skip
    assert not resumed.interrupted and resumed.step == 40
    for a, b in zip(reference.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_schedules() -> None:
    cfg = TrainingConfig(steps=100, lr=1.0, warmup_steps=10, schedule="cosine", min_lr_fraction=0.1)
    assert cfg.lr_at(0) == pytest.approx(0.1) and cfg.lr_at(9) == pytest.approx(1.0)
    assert cfg.lr_at(10) == pytest.approx(1.0) and cfg.lr_at(100) == pytest.approx(0.1)
    assert cfg.lr_at(55) == pytest.approx(0.1 + 0.9 * 0.5)
    log_cfg = TrainingConfig(steps=1000, n_log_checkpoints=7, checkpoint_every=500)
    assert sorted(log_cfg.checkpoint_steps()) == [0, 1, 3, 10, 32, 100, 316, 500, 1000]
    with pytest.raises(ValueError, match=r"TrainingConfig\.schedule='linear' is invalid"):
        TrainingConfig(schedule="linear")


def test_model_too_small_for_task() -> None:
    task = RepeatedTokens(**TINY_TASK)
    with pytest.raises(ValueError, match="too small for task repeated_tokens"):
        train(HookedTransformer(task.model_config(d_vocab=10)), task, TrainingConfig(steps=1), progress=False)


def test_cli_train(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli_run"
    argv = ["train", "repeated_tokens", "--steps", "12", "--eval-every", "6", "--d-model", "32", "--n-layers", "1",
            "--no-attn-scale", "--no-pos-embed", "--task-param", "length=24", "--task-param", "max_chunk=8",
            "--task-param", "max_gap=4", "--out", str(out), "--no-progress"]  # fmt: skip
    assert cli_main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["attn_scale"] == 1.0 and config["model"]["positional_embedding_type"] == "none"
    assert config["model"]["d_model"] == 32 and config["task"]["length"] == 24 and config["training"]["steps"] == 12
    assert "eval loss" in capsys.readouterr().out
    assert cli_main(argv) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert cli_main(["train", "inductoin"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean induction" in err


def test_cli_train_stops_on_sigint_after_a_checkpoint_with_exit_130(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "circuitlab.cli", "train", "repeated_tokens", "--steps", "100000", "--d-model", "16",
            "--n-layers", "1", "--batch-size", "4", "--eval-every", "100000", "--checkpoint-every", "5",
            "--task-param", "length=24", "--task-param", "max_chunk=8", "--task-param", "max_gap=4",
            "--threads", "1", "--out", str(out), "--no-progress"]  # fmt: skip
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(2400):  # wait (up to 2 min on a busy machine) until training runs: a checkpoint after step 0
            if len(list_checkpoints(out)) >= 2 or child.poll() is not None:
                break
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130, stderr
    step = int(re.search(r"stopped at step (\d+)", stdout).group(1))
    assert list_checkpoints(out)[-1][0] == step and 0 < step < 100000
    assert "--resume" in stdout and not (out / "final").exists()
