"""Pretrained Hugging Face models as `HookedTransformer`s, processed for interpretability.

`from_pretrained(folder or hub name)`, `from_pretrained_no_processing(...)` and `from_hf_model(model)`;
the families are declared in `circuitlab.loading.architectures`, weight processing lives in
`processing`, tokenizer helpers in `tokens` and sampling in `generate`. `transformers` is imported only
when a model is loaded, so `import circuitlab` stays light.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..model.config import _dtype_from
from ..model.io import CheckpointError, check_fits
from . import files
from .architectures import SUPPORTED, Architecture, find_architecture
from .files import HubUnreachableError
from .processing import process_weights

if TYPE_CHECKING:
    from ..model.transformer import HookedTransformer

INTEGER_FIELDS = ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "n_ctx", "d_vocab", "n_key_value_heads",
                  "rotary_dim", "window_size")  # fmt: skip
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def from_pretrained(
    name_or_path: str | os.PathLike,
    fold_ln: bool = True,
    center_writing_weights: bool = True,
    center_unembed: bool = True,
    refactor_factored_attn_matrices: bool = False,
    checkpoint_index: int | None = None,
    checkpoint_value: int | None = None,
    hf_model: Any = None,
    device: str | torch.device | None = None,
    n_devices: int = 1,
    tokenizer: Any = True,
    move_to_device: bool = True,
    fold_value_biases: bool = True,
    default_prepend_bos: bool | None = None,
    default_padding_side: str = "right",
    dtype: torch.dtype | str = torch.float32,
    first_n_layers: int | None = None,
    *,
    revision: str | None = None,
) -> HookedTransformer:
    """Load a causal LM from a local folder in Hugging Face layout (or a hub name, which needs the network).

    TransformerLens 2.x's signature. The four processing steps (see `circuitlab.loading.processing`) are on
    by default (`refactor_factored_attn_matrices` is off); they keep the log-probabilities. The weights are
    processed in float32, then cast to `dtype`. `tokenizer`: True (the folder's tokenizer, if it has one),
    False/None (none) or a tokenizer object. `hf_model` converts that in-memory model instead of reading
    weights. `n_devices` > 1 and checkpoints / `first_n_layers` are TransformerLens features we do not have:
    they raise.
    """
    _refuse_unsupported(n_devices, checkpoint_index, checkpoint_value, first_n_layers, default_padding_side)
    steps = dict(
        fold_ln=fold_ln,
        center_writing_weights=center_writing_weights,
        center_unembed=center_unembed,
        fold_value_biases=fold_value_biases,
        refactor_factored_attn_matrices=refactor_factored_attn_matrices,
    )
    if hf_model is not None:
        tok = tokenizer if tokenizer not in (True, False, None) else None
        model = from_hf_model(hf_model, tok, **steps, dtype=dtype, device=device if move_to_device else None)
        return _finish(model, default_prepend_bos, default_padding_side)
    folder = files.resolve(name_or_path, revision)
    raw = files.read_config(folder)
    arch = find_architecture(raw)  # before importing transformers: fails fast
    sizes = {hf: ours for ours, hf in arch.config.items() if isinstance(hf, str) and ours in INTEGER_FIELDS}
    files.check_integer_fields(folder, raw, sizes)
    from transformers import AutoConfig

    try:
        hf_cfg = AutoConfig.from_pretrained(str(folder))
    except (ValueError, TypeError, KeyError, OSError) as err:  # transformers' validation errors span lines
        why = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        raise CheckpointError(f"{folder / files.CONFIG_FILE} is not a valid {arch.name} config: {why}") from err
    sources: dict[str, Path] = {}
    state = files.load_state_dict(folder, sources)
    tok = (load_tokenizer(folder) if tokenizer is True else None) if tokenizer in (True, False, None) else tokenizer
    source = folder / files.CONFIG_FILE
    try:
        model = _build(
            arch, hf_cfg, state, tok, steps, dtype=dtype, device=device if move_to_device else None,
            name=str(name_or_path), source=source,
        )  # fmt: skip
    except (RuntimeError, ValueError) as err:
        if not isinstance(err, CheckpointError):
            files.check_shapes(folder, hf_cfg, state, sources)  # names the file and tensor when shapes disagree
        raise
    return _finish(model, default_prepend_bos, default_padding_side)


def _refuse_unsupported(
    n_devices: int,
    checkpoint_index: int | None,
    checkpoint_value: int | None,
    first_n_layers: int | None,
    default_padding_side: str,
) -> None:
    if n_devices != 1:
        raise ValueError(f"n_devices={n_devices}: circuitlab runs a model on one device; pass n_devices=1")
    if checkpoint_index is not None or checkpoint_value is not None:
        raise ValueError("checkpoint_index / checkpoint_value: load the checkpoint's own folder instead")
    if first_n_layers is not None:
        raise ValueError("first_n_layers is not supported: load the model and use stop_at_layer=")
    if default_padding_side not in ("left", "right"):
        raise ValueError(f"default_padding_side={default_padding_side!r} is invalid: expected 'left' or 'right'")


def _finish(model: HookedTransformer, default_prepend_bos: bool | None, default_padding_side: str) -> HookedTransformer:
    """TransformerLens's loading defaults: BOS prepending and the tokenizer's padding side."""
    if default_prepend_bos is not None:
        model.cfg.default_prepend_bos = bool(default_prepend_bos)
    if model.tokenizer is not None:
        model.tokenizer.padding_side = default_padding_side
    return model


def from_pretrained_no_processing(name_or_path: str | os.PathLike, **kwargs: Any) -> HookedTransformer:
    """`from_pretrained` with every processing step off: the weights exactly as stored."""
    steps = dict(fold_ln=False, center_writing_weights=False, center_unembed=False, fold_value_biases=False)
    return from_pretrained(name_or_path, **{**steps, **kwargs})


def from_hf_model(
    hf_model: Any,
    tokenizer: Any = None,
    *,
    fold_ln: bool = True,
    center_writing_weights: bool = True,
    center_unembed: bool = True,
    fold_value_biases: bool = True,
    refactor_factored_attn_matrices: bool = False,
    dtype: torch.dtype | str = torch.float32,
    device: str | torch.device | None = None,
) -> HookedTransformer:
    """Convert a `transformers` causal-LM object already in memory (its weights are copied, not shared)."""
    hf_cfg = hf_model.config
    arch = find_architecture({"architectures": [type(hf_model).__name__], "model_type": hf_cfg.model_type})
    state = {k: v.detach() for k, v in hf_model.state_dict().items()}
    steps = dict(
        fold_ln=fold_ln,
        center_writing_weights=center_writing_weights,
        center_unembed=center_unembed,
        fold_value_biases=fold_value_biases,
        refactor_factored_attn_matrices=refactor_factored_attn_matrices,
    )
    name = getattr(hf_cfg, "_name_or_path", "") or type(hf_model).__name__
    return _build(arch, hf_cfg, state, tokenizer, steps, dtype=dtype, device=device, name=name, source=name)


def load_tokenizer(folder: Path) -> Any:
    """The folder's `transformers` tokenizer, or None when it holds no tokenizer files."""
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def _build(
    arch: Architecture,
    hf_cfg: Any,
    state: dict[str, torch.Tensor],
    tokenizer: Any,
    steps: dict[str, bool],
    *,
    dtype: torch.dtype | str,
    device: str | torch.device | None,
    name: str,
    source: str | Path,
) -> HookedTransformer:
    from ..model.transformer import HookedTransformer

    cfg = arch.make_config(hf_cfg, init_weights=False, model_name=name)  # tokenizer_name set once built
    cfg.original_architecture = (getattr(hf_cfg, "architectures", None) or [arch.name])[0]
    if isinstance(getattr(hf_cfg, "bos_token_id", None), int):  # the head-score probes start with it
        cfg.extra["bos_token_id"] = hf_cfg.bos_token_id
    ours = arch.convert(state, cfg, tied=bool(getattr(hf_cfg, "tie_word_embeddings", False)))
    ours = {k: v.to(torch.float32) for k, v in ours.items()}  # process in float32 whatever the stored dtype
    with torch.device("meta"):  # the parameter names and shapes this config has, without memory
        expected = HookedTransformer(cfg, move_to_device=False).state_dict()
    unset = sorted(k for k in expected if k not in ours and not _is_bias(k))
    extra = sorted(set(ours) - set(expected))
    wrong = [
        f"{k}: weights {tuple(ours[k].shape)} vs config {tuple(expected[k].shape)}"
        for k in ours
        if k in expected and ours[k].shape != expected[k].shape
    ]
    if unset or extra or wrong:
        raise ValueError(
            f"the {arch.name} weights do not fit the converted config: unset {unset[:8]}, unexpected {extra[:8]}, "
            f"shape mismatches {wrong[:8]}"
        )
    check_fits(cfg, source)  # an absurd n_ctx (rotary tables) or d_vocab fails here, before allocating
    for k, v in expected.items():  # biases the family does not have (GPT-Neo's b_Q, Llama's b_O, b_U)
        ours.setdefault(k, torch.zeros(v.shape, dtype=torch.float32))
    process_weights(ours, cfg, **steps)
    cfg.dtype = _dtype_from(dtype)
    model = HookedTransformer(cfg, move_to_device=False)
    model.load_state_dict(ours)
    cfg.init_weights = True
    cfg.tokenizer_name = name
    if device is not None:
        cfg.device = str(torch.device(device))
        model.to(cfg.device)
    if tokenizer is not None:
        model.set_tokenizer(tokenizer)
    return model


def _is_bias(name: str) -> bool:
    leaf = name.rsplit(".", 1)[-1].lstrip("_")
    return leaf == "b" or leaf.startswith("b_")


__all__ = [
    "SUPPORTED",
    "HubUnreachableError",
    "from_hf_model",
    "from_pretrained",
    "from_pretrained_no_processing",
    "load_tokenizer",
    "process_weights",
]
