"""`HookedTransformerConfig`: every architectural switch of the model, validated on construction.

Field names follow TransformerLens so a tutorial's config reads unchanged; a few switches are ours
(`causal`, `positional_embedding_type="none"`, `fast_attention`) because the experiments need them.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import torch

ACT_FNS = ("relu", "gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "silu", "solu", "solu_ln")
NORMALIZATION_TYPES = ("LN", "LNPre", "RMS", "RMSPre", None)
POSITIONAL_EMBEDDING_TYPES = ("standard", "none", "rotary", "shortformer", "alibi")
ATTENTION_DIRS = ("causal", "bidirectional")
ATTN_TYPES = ("global", "local")
DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def _bad(name: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"HookedTransformerConfig.{name}={value!r} is invalid: {allowed}")


def _dtype_from(value: torch.dtype | str) -> torch.dtype:
    if isinstance(value, torch.dtype) and value in DTYPES.values():
        return value
    if isinstance(value, str) and value.removeprefix("torch.") in DTYPES:
        return DTYPES[value.removeprefix("torch.")]
    raise _bad("dtype", value, f"expected one of {sorted(DTYPES)} (a string or the torch dtype)")


_TL_ONLY_DEFAULTS: dict[str, Any] = {
    "init_mode": "gpt2",  # normal(0, init_range): what init_weights does
    "n_devices": 1,
    "final_rms": False,
    "scale_attn_by_inverse_layer_idx": False,
    "post_embedding_ln": False,
    "use_qk_norm": False,
    "use_normalization_before_and_after": False,
    "tie_word_embeddings": False,
    "attn_scores_soft_cap": -1.0,
    "output_logits_soft_cap": -1.0,
    "num_experts": None,
    "experts_per_token": None,
    "load_in_4bit": False,
    "use_NTK_by_parts_rope": False,
    "rotary_base_local": None,
    "relative_attention_max_distance": None,
    "relative_attention_num_buckets": None,
}


@dataclass(kw_only=True)
class HookedTransformerConfig:
    """Shape and switches of a decoder-only transformer.

    Required: `n_layers`, `d_model`, `n_ctx`, `d_vocab`, and `n_heads` or `d_head` (the other is derived
    as d_model // given). Left as None, `d_mlp` becomes 4 * d_model, `attn_scale` sqrt(d_head),
    `rotary_dim` d_head, `init_range` 0.8 / sqrt(d_model) and `d_vocab_out` d_vocab.

    Switches for pretrained families: `parallel_attn_mlp` (GPT-J/NeoX: attention and MLP both read
    resid_pre; no hook_resid_mid), `gated_mlp` (Llama's SwiGLU: act(x W_gate) * (x W_in) + b_in, with
    `mlp.hook_pre_linear`), `attn_types` (per layer "global" or "local") with `window_size` (a local
    layer's query at position q sees keys q - window_size < k <= q, as GPT-Neo and Mistral).

    Positional embeddings: "standard" (learned, added to the residual stream), "shortformer" (learned, added
    to the query and key inputs of every layer only), "rotary", "alibi" (a per-head linear distance penalty
    on the scores) or "none". `attention_dir` ("causal" / "bidirectional", TransformerLens's name) and our
    `causal` are one switch: setting either sets both.
    `ungroup_grouped_query_attention` repeats a grouped-query layer's keys and values per query head before
    the hooks, so hook_k / hook_v (and the key/value cache) are [batch, pos, head, d_head].
    """

    n_layers: int
    d_model: int
    n_ctx: int
    d_vocab: int
    n_heads: int | None = None
    d_head: int | None = None
    d_mlp: int | None = None
    d_vocab_out: int | None = None
    act_fn: str = "gelu"
    attn_only: bool = False
    normalization_type: str | None = "LN"
    eps: float = 1e-5
    positional_embedding_type: str = "standard"
    rotary_dim: int | None = None
    rotary_base: float = 10000.0
    rotary_adjacent_pairs: bool = False
    causal: bool = True
    attention_dir: str | None = None
    attn_scale: float | None = None
    use_attn_scale: bool = True
    n_key_value_heads: int | None = None
    ungroup_grouped_query_attention: bool = False
    use_attn_result: bool = False
    use_split_qkv_input: bool = False
    use_attn_in: bool = False
    use_hook_mlp_in: bool = False
    use_hook_tokens: bool = False
    fast_attention: bool = True
    parallel_attn_mlp: bool = False
    gated_mlp: bool = False
    attn_types: list[str] | None = None
    window_size: int | None = None
    seed: int | None = None
    init_range: float | None = None
    init_weights: bool = True
    dtype: torch.dtype = torch.float32
    device: str | None = None
    model_name: str = "custom"
    tokenizer_name: str | None = None
    original_architecture: str | None = None
    default_prepend_bos: bool = True
    tokenizer_prepends_bos: bool | None = None  # TransformerLens: whether the tokenizer adds BOS itself (None: unknown)
    initializer_range: float | None = None  # TransformerLens's name for init_range (the two are kept equal)
    # TransformerLens 2.x fields for features circuitlab does not implement: accepted at their TL default (so TL
    # code that passes or reads them runs), refused otherwise (see _TL_ONLY_DEFAULTS).
    init_mode: str = "gpt2"
    n_devices: int = 1
    use_local_attn: bool = False
    final_rms: bool = False
    scale_attn_by_inverse_layer_idx: bool = False
    post_embedding_ln: bool = False
    use_qk_norm: bool = False
    use_normalization_before_and_after: bool = False
    tie_word_embeddings: bool = False
    attn_scores_soft_cap: float = -1.0
    output_logits_soft_cap: float = -1.0
    num_experts: int | None = None
    experts_per_token: int | None = None
    load_in_4bit: bool = False
    use_NTK_by_parts_rope: bool = False
    rotary_base_local: float | None = None
    relative_attention_max_distance: int | None = None
    relative_attention_num_buckets: int | None = None
    from_checkpoint: bool = False
    checkpoint_index: int | None = None
    checkpoint_label_type: str | None = None
    checkpoint_value: int | None = None
    trust_remote_code: bool = False
    decoder_start_token_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.attention_dir is not None:
            if self.attention_dir not in ATTENTION_DIRS:
                raise _bad("attention_dir", self.attention_dir, f"expected one of {list(ATTENTION_DIRS)}")
            if self.causal is not (self.attention_dir == "causal") and self.causal is not True:
                raise _bad("attention_dir", self.attention_dir, f"it contradicts causal={self.causal}; set only one")
            self.causal = self.attention_dir == "causal"
        for name in ("n_layers", "d_model", "n_ctx", "d_vocab"):
            value = getattr(self, name)
            if name == "d_vocab" and value == -1:
                continue  # TransformerLens: taken from the tokenizer when the model is built
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise _bad(name, value, "expected a positive integer (d_vocab: or -1, from the tokenizer)")
        if self.d_vocab_out == -1:
            self.d_vocab_out = None  # TransformerLens's "same as d_vocab"
        for name in ("n_heads", "d_head", "d_mlp", "d_vocab_out", "n_key_value_heads", "rotary_dim"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise _bad(name, value, "expected a positive integer or None")
        if self.n_heads is None and self.d_head is None:
            raise _bad("n_heads", None, "give n_heads or d_head (the other defaults to d_model // it)")
        if self.n_heads is None:
            if self.d_model % self.d_head:
                raise _bad("d_head", self.d_head, f"d_model={self.d_model} is not divisible by it; give n_heads")
            self.n_heads = self.d_model // self.d_head
        if self.d_head is None:
            if self.d_model % self.n_heads:
                raise _bad("n_heads", self.n_heads, f"d_model={self.d_model} is not divisible by it; give d_head")
            self.d_head = self.d_model // self.n_heads
        if self.act_fn not in ACT_FNS:
            raise _bad("act_fn", self.act_fn, f"expected one of {list(ACT_FNS)}")
        if self.normalization_type not in NORMALIZATION_TYPES:
            raise _bad("normalization_type", self.normalization_type, f"expected one of {list(NORMALIZATION_TYPES)}")
        if self.positional_embedding_type not in POSITIONAL_EMBEDDING_TYPES:
            raise _bad(
                "positional_embedding_type",
                self.positional_embedding_type,
                f"expected one of {list(POSITIONAL_EMBEDDING_TYPES)}",
            )
        if self.d_mlp is None and not self.attn_only:
            self.d_mlp = 4 * self.d_model
        if self.d_vocab_out is None:
            self.d_vocab_out = self.d_vocab
        if self.n_key_value_heads is not None and self.n_heads % self.n_key_value_heads:
            raise _bad(
                "n_key_value_heads",
                self.n_key_value_heads,
                f"must divide n_heads={self.n_heads} (grouped-query attention)",
            )
        if self.positional_embedding_type == "rotary":
            if self.rotary_dim is None:
                self.rotary_dim = self.d_head
            if self.rotary_dim > self.d_head or self.rotary_dim % 2:
                raise _bad("rotary_dim", self.rotary_dim, f"expected an even number <= d_head={self.d_head}")
            if not self.rotary_base > 0:
                raise _bad("rotary_base", self.rotary_base, "expected a positive number")
        if not self.use_attn_scale:
            if self.attn_scale not in (None, 1.0):
                raise _bad("attn_scale", self.attn_scale, "use_attn_scale=False means attn_scale 1.0; set only one")
            self.attn_scale = 1.0
        if self.attn_scale is None:
            self.attn_scale = math.sqrt(self.d_head)
        if isinstance(self.attn_scale, bool) or not isinstance(self.attn_scale, int | float) or self.attn_scale <= 0:
            raise _bad("attn_scale", self.attn_scale, "expected a positive number (1.0 turns scaling off)")
        self.attn_scale = float(self.attn_scale)
        if self.initializer_range is not None and self.initializer_range > 0:  # TL: -1.0 means "derive it"
            if self.init_range is not None and self.init_range != self.initializer_range:
                raise _bad("initializer_range", self.initializer_range, f"it contradicts init_range={self.init_range}")
            self.init_range = self.initializer_range
        if self.init_range is None:
            self.init_range = 0.8 / math.sqrt(self.d_model)
        self.initializer_range = self.init_range
        for name, default in _TL_ONLY_DEFAULTS.items():
            if getattr(self, name) != default:
                raise _bad(name, getattr(self, name), f"circuitlab does not implement it: leave it at {default!r}")
        if self.attn_types is not None:
            self.use_local_attn = "local" in self.attn_types
        if not self.init_range > 0:
            raise _bad("init_range", self.init_range, "expected a positive standard deviation")
        if not self.eps > 0:
            raise _bad("eps", self.eps, "expected a small positive number")
        if self.attn_types is not None:
            self.attn_types = list(self.attn_types)
            if len(self.attn_types) != self.n_layers or any(t not in ATTN_TYPES for t in self.attn_types):
                raise _bad("attn_types", self.attn_types, f"expected one of {list(ATTN_TYPES)} per layer, or None")
            if "local" in self.attn_types and (
                not isinstance(self.window_size, int) or isinstance(self.window_size, bool) or self.window_size < 1
            ):
                raise _bad("window_size", self.window_size, "local attention needs a positive integer window_size")
            if "local" in self.attn_types and not self.causal:
                raise _bad("attn_types", self.attn_types, "local attention is only defined for causal models")
        if self.gated_mlp and self.act_fn == "solu_ln":
            raise _bad("gated_mlp", True, "a gated MLP with act_fn='solu_ln' is not supported")
        if self.use_attn_in and self.use_split_qkv_input:
            raise _bad("use_attn_in", True, "use_attn_in and use_split_qkv_input are exclusive; pick one")
        flags = (
            "attn_only",
            "causal",
            "use_attn_scale",
            "use_attn_result",
            "use_split_qkv_input",
            "use_attn_in",
            "use_hook_mlp_in",
            "use_hook_tokens",
            "rotary_adjacent_pairs",
            "fast_attention",
            "init_weights",
            "parallel_attn_mlp",
            "gated_mlp",
            "ungroup_grouped_query_attention",
            "default_prepend_bos",
        )
        for name in flags:
            if not isinstance(getattr(self, name), bool):
                raise _bad(name, getattr(self, name), "expected True or False")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            raise _bad("seed", self.seed, "expected an integer or None")
        self.dtype = _dtype_from(self.dtype)
        if self.device is not None:
            try:
                self.device = str(torch.device(self.device))
            except (RuntimeError, TypeError) as err:
                raise _bad("device", self.device, "expected a torch device such as 'cpu' or 'cuda:0'") from err

        self._initialised = True
        self.attention_dir = "causal" if self.causal else "bidirectional"

    def __setattr__(self, name: str, value: Any) -> None:
        # `causal` and TransformerLens's `attention_dir` are one switch: keep them in step after construction.
        if name == "attention_dir" and value is not None and self.__dict__.get("_initialised"):
            if value not in ATTENTION_DIRS:
                raise _bad("attention_dir", value, f"expected one of {list(ATTENTION_DIRS)}")
            object.__setattr__(self, "causal", value == "causal")
        elif name == "causal" and self.__dict__.get("_initialised"):
            object.__setattr__(self, "attention_dir", "causal" if value else "bidirectional")
        object.__setattr__(self, name, value)

    def set_vocab_from(self, tokenizer: Any) -> None:
        """d_vocab (and a d_vocab_out that follows it) from a tokenizer, for a config made with d_vocab=-1."""
        if tokenizer is None:
            raise _bad(
                "d_vocab", -1, "d_vocab=-1 takes the size from a tokenizer: pass HookedTransformer(cfg, tokenizer)"
            )
        size = max(tokenizer.get_vocab().values()) + 1
        if self.d_vocab_out in (-1, self.d_vocab):
            self.d_vocab_out = size
        self.d_vocab = size

    @classmethod
    def unwrap(cls, config: HookedTransformerConfig | dict[str, Any]) -> HookedTransformerConfig:
        """A config from a config or its dict form (TransformerLens's `HookedTransformerConfig.unwrap`)."""
        if isinstance(config, dict):
            return cls.from_dict(config)
        if not isinstance(config, cls):
            raise TypeError(f"expected a HookedTransformerConfig or a dict, got {type(config).__name__}")
        return config

    def is_layer_norm_activation(self) -> bool:
        """True when the activation function is followed by its own LayerNorm (act_fn ending in '_ln')."""
        return self.act_fn is not None and self.act_fn.endswith("_ln")

    @property
    def n_kv_heads(self) -> int:
        return self.n_key_value_heads or self.n_heads

    @property
    def n_params(self) -> int:
        """Parameters in attention and MLP weight matrices (TransformerLens's count: no embeddings)."""
        attn = self.d_model * self.d_head * (2 * self.n_heads + 2 * self.n_kv_heads)
        mlp = 0 if self.attn_only else (3 if self.gated_mlp else 2) * self.d_model * self.d_mlp
        return self.n_layers * (attn + mlp)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (dtype as a string) that `from_dict` turns back into an equal config."""
        out = dataclasses.asdict(self)
        out["dtype"] = str(self.dtype).removeprefix("torch.")
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HookedTransformerConfig:
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [key for key in data if key not in names]
        if unknown:
            hints = {key: difflib.get_close_matches(key, names, n=3) for key in unknown}
            raise ValueError(f"unknown HookedTransformerConfig fields {hints} (key: closest valid names)")
        return cls(**data)
