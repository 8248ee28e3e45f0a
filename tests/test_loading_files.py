"""Resolving folders and hub names, reading weights in every layout, and the errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from circuitlab import HookedTransformer
from circuitlab.loading import SUPPORTED, HubUnreachableError

from .loading_helpers import save_hf, tokens


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gpt2")
    save_hf("gpt2", folder)
    return folder


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_hub_name_offline_fails_at_once_and_says_to_pass_a_folder(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    start = time.perf_counter()
    with pytest.raises(HubUnreachableError, match=r"unreachable.*pass a local folder in Hugging Face layout"):
        HookedTransformer.from_pretrained("gpt2")
    assert time.perf_counter() - start < 5


def test_missing_folders_and_folders_without_config(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a folder"):
        HookedTransformer.from_pretrained(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        HookedTransformer.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    with pytest.raises(FileNotFoundError, match="has no weights"):
        HookedTransformer.from_pretrained(tmp_path)


def test_unsupported_architecture_lists_the_supported_ones(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"], "model_type": "bert"}))
    with pytest.raises(ValueError, match="unsupported architecture") as err:
        HookedTransformer.from_pretrained(tmp_path)
    for name in ("GPT2LMHeadModel", "GPTNeoForCausalLM", "GPTNeoXForCausalLM", "LlamaForCausalLM"):
        assert name in str(err.value) and name in SUPPORTED


def test_missing_and_unexpected_weights_are_named(gpt2_folder: Path, tmp_path: Path) -> None:
    folder = _copy(gpt2_folder, tmp_path / "bad")
    state = load_file(str(folder / "model.safetensors"))
    del state["transformer.h.1.mlp.c_fc.weight"]
    state["transformer.h.0.attn.surprise"] = torch.zeros(3)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing \['transformer\.h\.1\.mlp\.c_fc\.weight'\]") as err:
        HookedTransformer.from_pretrained(folder)
    assert "transformer.h.0.attn.surprise" in str(err.value)


def test_wrong_shapes_are_named(gpt2_folder: Path, tmp_path: Path) -> None:
    folder = _copy(gpt2_folder, tmp_path / "bad")
    state = load_file(str(folder / "model.safetensors"))
    state["transformer.wpe.weight"] = state["transformer.wpe.weight"][:10].clone()
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match=r"pos_embed\.W_pos: weights \(10, 48\) vs config \(32, 48\)"):
        HookedTransformer.from_pretrained(folder)


def test_pytorch_bin_and_sharded_checkpoints_load_the_same(gpt2_folder: Path, tmp_path: Path) -> None:
    expected = HookedTransformer.from_pretrained(gpt2_folder)(tokens())
    state = load_file(str(gpt2_folder / "model.safetensors"))
    # pytorch_model.bin, read with weights_only=True
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    (bin_folder / "config.json").write_bytes((gpt2_folder / "config.json").read_bytes())
    torch.save(state, bin_folder / "pytorch_model.bin")
    torch.testing.assert_close(HookedTransformer.from_pretrained(bin_folder)(tokens()), expected)
    # sharded safetensors with an index
    shard_folder = tmp_path / "shards"
    shard_folder.mkdir()
    (shard_folder / "config.json").write_bytes((gpt2_folder / "config.json").read_bytes())
    names = sorted(state)
    weight_map = {}
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :])):
        shard = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({k: state[k] for k in part}, str(shard_folder / shard))
        weight_map.update(dict.fromkeys(part, shard))
    (shard_folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    torch.testing.assert_close(HookedTransformer.from_pretrained(shard_folder)(tokens()), expected)


def test_dtype_and_device_options(gpt2_folder: Path) -> None:
    model = HookedTransformer.from_pretrained(gpt2_folder, dtype="bfloat16", device="cpu")
    assert model.cfg.dtype == torch.bfloat16 and model.W_Q.dtype == torch.bfloat16
    assert model.cfg.device == "cpu" and model.cfg.model_name == str(gpt2_folder)
    reference = HookedTransformer.from_pretrained(gpt2_folder)(tokens()).log_softmax(-1)
    torch.testing.assert_close(model(tokens()).float().log_softmax(-1), reference, atol=0.15, rtol=0)


def test_import_circuitlab_does_not_import_transformers() -> None:
    code = (
        "import sys, circuitlab; circuitlab.HookedTransformer; "
        "assert 'transformers' not in sys.modules and 'circuitlab.loading' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
