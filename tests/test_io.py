"""save / load: exact round trip, atomic writes, and clear errors for corrupt or mismatched files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

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
    # Saving over an existing checkpoint replaces it and leaves no temporary folders behind.
    other = small_model(seed=9)
    other.save(path)
    assert torch.equal(HookedTransformer.load(path)(tokens), other(tokens))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


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
    assert torch.equal(HookedTransformer.load(path)(tokens), model(tokens))


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


def test_refuses_to_replace_a_foreign_folder(tmp_path: Path) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a circuitlab checkpoint"):
        small_model().save(target)
    assert (target / "notes.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]
