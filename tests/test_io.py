"""save / load: exact round trip, crash safety under SIGKILL, saving never touches files it did not write,
and a clear one-line error for every corrupt or mismatched file."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from circuitlab import CheckpointError, HookedTransformer
from circuitlab.model import io

from .conftest import small_model


def test_round_trip(tmp_path: Path, tokens: torch.Tensor) -> None:
    model = small_model(positional_embedding_type="rotary", n_key_value_heads=2, dtype=torch.float64)
    path = model.save(tmp_path / "ckpt")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = HookedTransformer.load(path)
    assert loaded.cfg == model.cfg
    assert torch.equal(loaded(tokens), model(tokens))
    # Saving over an existing checkpoint replaces it and leaves no temporary files behind.
    other = small_model(seed=9)
    other.save(path)
    assert torch.equal(HookedTransformer.load(path)(tokens), other(tokens))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    # The same weights give the same bytes (no time or random id inside).
    first = (path / "model.safetensors").read_bytes()
    other.save(tmp_path / "again")
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == first


def test_interrupted_save_keeps_the_old_checkpoint(tmp_path: Path, tokens: torch.Tensor, monkeypatch) -> None:
    model = small_model()
    path = model.save(tmp_path / "ckpt")

    def crash(*args, **kwargs):
        Path(args[1]).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(io, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        small_model(seed=3).save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    assert torch.equal(HookedTransformer.load(path)(tokens), model(tokens))


KILL_CHILD = """
import os, signal, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
sys.path.insert(0, {root!r})
from circuitlab.model import io
from tests.conftest import small_model
kind, n = sys.argv[1], int(sys.argv[2])
calls = {{"write": 0, "replace": 0}}
real_write, real_replace = io.write_temp, os.replace
def die():
    os.kill(os.getpid(), signal.SIGKILL)
def write_temp(path, write):  # the n-th temporary file: half written, then SIGKILL
    calls["write"] += 1
    if kind == "write" and calls["write"] == n:
        return real_write(path, lambda tmp: (Path(tmp).write_bytes(b"half a fi"), die()))
    return real_write(path, write)
def replace(src, dst):  # SIGKILL just before the n-th rename
    calls["replace"] += 1
    if kind == "replace" and calls["replace"] == n:
        die()
    real_replace(src, dst)
io.write_temp, os.replace = write_temp, replace
small_model(seed=9).save({path!r})
die()  # "done": killed after the save returned
"""

# (where the kill lands, which model `path` holds afterwards, the temporaries left)
KILL_POINTS = [
    (("write", 1), "old", ["model"]),  # weights temporary half written
    (("write", 2), "old", ["config", "model"]),  # config temporary half written
    (("replace", 1), "old", ["config", "model"]),  # both temporaries complete, nothing renamed
    (("replace", 2), "new", ["config"]),  # weights renamed, config not yet: load takes the temporary config
    (("done", 0), "new", []),
]


def test_sigkill_at_each_step_of_save_leaves_the_old_or_the_new_model(tmp_path: Path, tokens: torch.Tensor) -> None:
    old, new = small_model(), small_model(seed=9)
    root = str(Path(__file__).resolve().parents[1])
    children = []
    for (kind, n), _, _ in KILL_POINTS:
        path = old.save(tmp_path / f"{kind}{n}")
        code = textwrap.dedent(KILL_CHILD.format(root=root, path=str(path)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([root + "/src", os.environ.get("PYTHONPATH", "")])}
        children.append(subprocess.Popen([sys.executable, "-c", code, kind, str(n)], env=env, stderr=subprocess.PIPE))
    for ((kind, n), expected, temps), child in zip(KILL_POINTS, children, strict=True):
        _, err = child.communicate(timeout=120)
        assert child.returncode == -signal.SIGKILL, err.decode()
        path = tmp_path / f"{kind}{n}"
        left = sorted(p.name.split(".")[1] for p in path.iterdir() if p.name.endswith(".tmp"))
        assert left == temps, (kind, n, left)
        want = (old if expected == "old" else new)(tokens)
        assert torch.equal(HookedTransformer.load(path)(tokens), want), (kind, n)
        # The next save settles the folder: a third model, nothing but the two files left.
        third = small_model(seed=4)
        third.save(path)
        assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"], (kind, n)
        assert torch.equal(HookedTransformer.load(path)(tokens), third(tokens))


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _run_dir(folder: Path) -> Path:
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model": {}, "task": {"name": "x"}, "training": {}}))
    (folder / "metrics.jsonl").write_text('{"step": 0}\n')
    (folder / "checkpoints" / "step_000000.safetensors").write_bytes(b"weights of step 0")
    return folder


def _hf_folder(folder: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    for name in ("tokenizer.json", "README.md", "generation_config.json", "model.safetensors"):
        (folder / name).write_text(f"the user's {name}")
    return folder


def _unrelated(folder: Path) -> Path:
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    return folder


@pytest.mark.parametrize("make", [_run_dir, _hf_folder, _unrelated])
def test_saving_over_a_foreign_folder_touches_nothing_it_did_not_write(make, tmp_path: Path, tokens) -> None:
    folder = make(tmp_path / "target")
    before = _hashes(folder)
    model = small_model()
    with pytest.raises(FileExistsError) as err:
        model.save(folder)
    message = str(err.value)
    assert "\n" not in message and str(folder) in message
    assert _hashes(folder) == before and [p.name for p in tmp_path.iterdir()] == ["target"]
    if make is _run_dir:  # a run keeps its model in final/; overwrite cannot make save replace the run's config
        assert str(folder / "final") in message
        with pytest.raises(FileExistsError, match="training run directory"):
            model.save(folder, overwrite=True)
        model.save(folder / "final")
        assert {k: v for k, v in _hashes(folder).items() if not k.startswith("final/")} == before
        return
    assert "overwrite=True" in message
    model.save(folder, overwrite=True)  # replaces only config.json and model.safetensors
    after = _hashes(folder)
    own = {"config.json", "model.safetensors"}
    assert {k: v for k, v in after.items() if k not in own} == {k: v for k, v in before.items() if k not in own}
    assert set(after) == set(before) | own
    assert torch.equal(HookedTransformer.load(folder)(tokens), model(tokens))
    # Now it is a circuitlab model folder: saving again needs no overwrite and keeps the other files.
    small_model(seed=2).save(folder)
    assert {k: v for k, v in _hashes(folder).items() if k not in own} == {
        k: v for k, v in before.items() if k not in own
    }


def test_modes_are_0755_and_0644(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = small_model().save(tmp_path / "a" / "b")
    finally:
        os.umask(old)
    for p in [tmp_path / "a", path, *path.iterdir()]:
        assert stat.S_IMODE(p.stat().st_mode) == (0o755 if p.is_dir() else 0o644), p


def test_corrupt_and_mismatched_files(tmp_path: Path) -> None:
    path = small_model().save(tmp_path / "ckpt")
    weights = path / "model.safetensors"
    good = weights.read_bytes()

    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        HookedTransformer.load(path)
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        HookedTransformer.load(path)

    weights.write_bytes(good)
    config = json.loads((path / "config.json").read_text())
    config["config"]["d_mlp"] = 64
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"shape mismatches.*mlp.W_in"):
        HookedTransformer.load(path)
    config["config"]["attn_only"] = True
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unexpected"):
        HookedTransformer.load(path)

    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt or invalid"):
        HookedTransformer.load(path)
    with pytest.raises(CheckpointError, match=r"config\.json is missing"):
        HookedTransformer.load(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("[1, 2]", r"config\.json holds a JSON list, not an object"),
        ("null", r"config\.json holds a JSON null, not an object"),
        ('{"format": "circuitlab.HookedTransformer"}', r"config\.json has no 'config' section"),
        ('{"format": "circuitlab.HookedTransformer", "config": 3}', r"config\.json has no 'config' section"),
    ],
)
def test_config_json_of_the_wrong_shape(text: str, pattern: str, tmp_path: Path) -> None:
    path = small_model().save(tmp_path / "ckpt")
    (path / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match=pattern) as err:
        HookedTransformer.load(path)
    assert str(path / "config.json") in str(err.value) and "\n" not in str(err.value)


def test_absurd_sizes_are_refused_before_allocating(tmp_path: Path) -> None:
    path = small_model().save(tmp_path / "ckpt")
    config = json.loads((path / "config.json").read_text())
    config["config"]["n_ctx"] = 10**12
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as err:
        HookedTransformer.load(path)
    message = str(err.value)
    assert str(path / "config.json") in message and "\n" not in message
    assert "32,000,00" in message and "GiB" in message  # ~3.2e13 parameters (W_pos alone)
    assert "pos_embed.W_pos [1000000000000, 32]" in message and "n_ctx" in message


def test_weights_from_another_save_are_not_loaded_silently(tmp_path: Path) -> None:
    a = small_model().save(tmp_path / "a")
    b = small_model(seed=5).save(tmp_path / "b")
    (a / "model.safetensors").write_bytes((b / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="from different saves"):
        HookedTransformer.load(a)


def test_files_saved_before_the_weights_hash_still_load(tmp_path: Path, tokens: torch.Tensor) -> None:
    model = small_model()
    folder = tmp_path / "legacy"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"format": io.FORMAT, "config": model.cfg.to_dict()}))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": io.FORMAT})
    assert torch.equal(HookedTransformer.load(folder)(tokens), model(tokens))
