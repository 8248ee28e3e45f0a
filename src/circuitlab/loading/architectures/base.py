"""The declarative form of an architecture: config-field table and weight table, and the code that applies them.

An `Architecture` says, for one Hugging Face model family,
- `config`: our config field -> how to read it from the Hugging Face config (an attribute name or a function);
- `weights`: `Weight` rules, each one Hugging Face parameter (with `{l}` for the layer) -> one or more of our
  parameters (state-dict names, `{l}` for the layer, `{kv}` for "_" under grouped-query attention) through a
  reshape function of (tensor, our config).
`convert` applies both tables and checks that every parameter on both sides was used exactly once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ...model.config import HookedTransformerConfig

Reshape = Callable[[torch.Tensor, HookedTransformerConfig], torch.Tensor | tuple[torch.Tensor, ...]]
Getter = str | Callable[[Any], Any]

ACT_FNS = {
    "gelu": "gelu",
    "gelu_new": "gelu_new",
    "gelu_pytorch_tanh": "gelu_new",  # the same tanh approximation
    "gelu_fast": "gelu_fast",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}


def act_fn(name: str) -> str:
    if name not in ACT_FNS:
        raise ValueError(f"activation {name!r} is not supported; supported: {sorted(ACT_FNS)}")
    return ACT_FNS[name]


@dataclass(frozen=True)
class Weight:
    """One Hugging Face parameter (alternative names in order of preference) -> our parameter(s)."""

    source: str | tuple[str, ...]  # the name, or its spellings across transformers versions
    targets: str | tuple[str, ...]
    reshape: Reshape = lambda t, cfg: t
    optional: bool = False  # absent in some configs (biases switched off): ours then stay zero
    tied: str | None = None  # read this one instead when absent and the config ties embeddings

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.source,) if isinstance(self.source, str) else self.source

    @property
    def names(self) -> tuple[str, ...]:
        return (self.targets,) if isinstance(self.targets, str) else self.targets


@dataclass(frozen=True)
class Architecture:
    name: str
    hf_classes: tuple[str, ...]
    model_types: tuple[str, ...]
    config: dict[str, Getter]
    weights: tuple[Weight, ...]
    ignore: tuple[str, ...] = ()  # regexes of Hugging Face buffers that carry no weights (masks, inv_freq)
    check: Callable[[Any], None] = lambda hf_cfg: None  # raises on config options we do not implement
    defaults: dict[str, Any] = field(default_factory=dict)

    def make_config(self, hf_cfg: Any, **overrides: Any) -> HookedTransformerConfig:
        self.check(hf_cfg)
        values = dict(self.defaults)
        for ours, getter in self.config.items():
            values[ours] = getter(hf_cfg) if callable(getter) else getattr(hf_cfg, getter)
        values["model_name"] = getattr(hf_cfg, "_name_or_path", "") or self.name
        values.update(overrides)
        return HookedTransformerConfig(**values)

    def convert(
        self, state: dict[str, torch.Tensor], cfg: HookedTransformerConfig, tied: bool
    ) -> dict[str, torch.Tensor]:
        """Our state dict from the Hugging Face one; errors name missing and unexpected parameters.

        `tied`: the unembedding may be the token embedding (tie_word_embeddings), when no separate one is stored.
        """
        kv = "_" if cfg.n_key_value_heads is not None else ""
        out: dict[str, torch.Tensor] = {}
        used: set[str] = set()
        missing: list[str] = []
        for rule in self.weights:
            layers: Sequence[int | None] = range(cfg.n_layers) if "{l}" in rule.sources[0] else [None]
            for layer in layers:
                fallback = (rule.tied,) if tied and rule.tied else ()
                sources = [s.format(l=layer) for s in (*rule.sources, *fallback)]
                found = next((s for s in sources if s in state), None)
                if found is None:
                    if not rule.optional:
                        missing.append(sources[0])
                    continue
                used.add(found)
                with torch.no_grad():
                    values = rule.reshape(state[found], cfg)
                values = values if isinstance(values, tuple) else (values,)
                for name, value in zip(rule.names, values, strict=True):
                    out[name.format(l=layer, kv=kv)] = value
        unexpected = sorted(
            k for k in state if k not in used and not any(re.search(pattern, k) for pattern in self.ignore)
        )
        if missing or unexpected:
            raise ValueError(
                f"the {self.name} weights do not match the config: missing {_few(missing)}, "
                f"unexpected {_few(unexpected)}"
            )
        return out


def _few(names: list[str]) -> str:
    return f"{names[:8]}{f' and {len(names) - 8} more' if len(names) > 8 else ''}"


# ---- reshapes shared by the families ----------------------------------------------------------
def transpose(t: torch.Tensor, cfg: HookedTransformerConfig) -> torch.Tensor:
    """nn.Linear's [out, in] -> our [in, out]."""
    return t.T


def linear_to_heads(t: torch.Tensor, cfg: HookedTransformerConfig) -> torch.Tensor:
    """nn.Linear weight [heads * d_head, d_model] -> [heads, d_model, d_head] (heads read off the shape)."""
    return t.unflatten(0, (-1, cfg.d_head)).transpose(1, 2)


def bias_to_heads(t: torch.Tensor, cfg: HookedTransformerConfig) -> torch.Tensor:
    """[heads * d_head] -> [heads, d_head]."""
    return t.unflatten(0, (-1, cfg.d_head))


def linear_out_to_heads(t: torch.Tensor, cfg: HookedTransformerConfig) -> torch.Tensor:
    """Output projection [d_model, heads * d_head] -> W_O [heads, d_head, d_model]."""
    return t.T.unflatten(0, (cfg.n_heads, cfg.d_head))


def rope_parameter(hf_cfg: Any, key: str, legacy: str, default: Any) -> Any:
    """A rotary setting from `rope_parameters` (transformers 5) or its older top-level attribute."""
    params = getattr(hf_cfg, "rope_parameters", None) or {}
    if key in params and params[key] is not None:
        return params[key]
    value = getattr(hf_cfg, legacy, None)
    return default if value is None else value


def check_plain_rope(hf_cfg: Any) -> None:
    params = getattr(hf_cfg, "rope_parameters", None) or getattr(hf_cfg, "rope_scaling", None) or {}
    kind = params.get("rope_type", params.get("type", "default"))
    if kind != "default":
        raise ValueError(f"rotary scaling {kind!r} is not supported (only the default rotary embedding is)")
