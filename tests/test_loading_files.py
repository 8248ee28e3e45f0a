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

from circuitlab import CheckpointError, HookedTransformer
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


def _one_line(err: pytest.ExceptionInfo, *names: object) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    for name in names:
        assert str(name) in message, (name, message)
    return message


def test_wrong_shapes_are_named(gpt2_folder: Path, tmp_path: Path) -> None:
    folder = _copy(gpt2_folder, tmp_path / "bad")
    state = load_file(str(folder / "model.safetensors"))
    state["transformer.wpe.weight"] = state["transformer.wpe.weight"][:10].clone()
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(
        CheckpointError, match=r"transformer\.wpe\.weight has shape \[10, 48\], but .* gives \[32, 48\]"
    ):
        HookedTransformer.from_pretrained(folder)


def test_weights_narrower_than_config_name_file_tensor_and_shapes(gpt2_folder: Path, tmp_path: Path) -> None:
    folder = _copy(gpt2_folder, tmp_path / "bad")  # weights with n_embd 48, config says 64
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "n_embd": 64}))
    with pytest.raises(CheckpointError) as err:
        HookedTransformer.from_pretrained(folder)
    _one_line(
        err, folder / "model.safetensors", folder / "config.json", "transformer.wte.weight", "[61, 48]", "[61, 64]"
    )


def test_truncated_safetensors_is_named(gpt2_folder: Path, tmp_path: Path) -> None:
    folder = _copy(gpt2_folder, tmp_path / "bad")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
        HookedTransformer.from_pretrained(folder)
    _one_line(err, folder / "model.safetensors")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [("n_embd", "wide", "n_embd is 'wide', expected a positive integer"), ("n_layer", 2.5, "n_layer is 2.5")],
)
def test_config_field_of_the_wrong_type(field: str, value: object, expected: str, gpt2_folder: Path, tmp_path) -> None:
    folder = _copy(gpt2_folder, tmp_path / "bad")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, field: value}))
    with pytest.raises(CheckpointError, match=expected) as err:
        HookedTransformer.from_pretrained(folder)
    _one_line(err, folder / "config.json", field)


@pytest.mark.parametrize("text", ["[1, 2]", "null"])
def test_config_json_that_is_not_an_object(text: str, gpt2_folder: Path, tmp_path: Path) -> None:
    folder = _copy(gpt2_folder, tmp_path / "bad")
    (folder / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match="not an object") as err:
        HookedTransformer.from_pretrained(folder)
    _one_line(err, folder / "config.json", "list" if text.startswith("[") else "null")


class Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickle_with_code_is_refused_in_one_line(gpt2_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "config.json").write_bytes((gpt2_folder / "config.json").read_bytes())
    marker = tmp_path / "code-ran"
    state = load_file(str(gpt2_folder / "model.safetensors"))
    torch.save({**state, "extra": Payload(str(marker))}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="holds pickled code, not only weights: refused") as err:
        HookedTransformer.from_pretrained(folder)
    _one_line(err, folder / "pytorch_model.bin", "convert it once to safetensors", "weights_only=False")
    assert not marker.exists()
    # A truncated .bin is corrupt, not code.
    data = (folder / "pytorch_model.bin").read_bytes()
    (folder / "pytorch_model.bin").write_bytes(data[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
        HookedTransformer.from_pretrained(folder)
    _one_line(err, folder / "pytorch_model.bin")


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd", "sub/../../x.safetensors"])
def test_shard_index_may_not_leave_the_folder(shard: str, gpt2_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_bytes((gpt2_folder / "config.json").read_bytes())
    (tmp_path / "outside.safetensors").write_bytes((gpt2_folder / "model.safetensors").read_bytes())
    index = {"weight_map": {"transformer.wte.weight": shard}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="outside the model folder; refused") as err:
        HookedTransformer.from_pretrained(folder)
    _one_line(err, shard)


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


def test_absurd_context_length_is_refused_before_allocating(tmp_path: Path) -> None:
    folder = tmp_path / "llama"
    folder.mkdir()
    save_hf("llama_gqa2_head_dim", folder)  # rotary: no weight grows with n_ctx, the sin/cos tables would
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 10**12}))
    with pytest.raises(CheckpointError, match="more than this machine's") as err:
        HookedTransformer.from_pretrained(folder)
    _one_line(err, folder / "config.json", "rotary_sin [1000000000000, ", "GiB")
