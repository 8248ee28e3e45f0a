"""The MLP sublayer: W_in [d_model, d_mlp], activation, W_out [d_mlp, d_model]; optionally gated (W_gate)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .config import HookedTransformerConfig
from .hook_points import HookPoint
from .norms import LayerNorm, LayerNormPre


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's tanh approximation of GELU."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def gelu_fast(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def solu(x: torch.Tensor) -> torch.Tensor:
    """Softmax linear unit (Elhage et al. 2022): x * softmax(x) over the neurons."""
    return x * torch.softmax(x, dim=-1)


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": gelu_new,
    "gelu_fast": gelu_fast,
    "gelu_pytorch_tanh": functools.partial(F.gelu, approximate="tanh"),
    "silu": F.silu,
    "solu": solu,
    "solu_ln": solu,
}


class MLP(nn.Module):
    """cfg a config or a dict; `gated` None follows `cfg.gated_mlp` (TransformerLens: MLP / GatedMLP)."""

    def __init__(self, cfg: HookedTransformerConfig | dict, gated: bool | None = None) -> None:
        super().__init__()
        cfg = HookedTransformerConfig.unwrap(cfg)
        self.cfg = cfg
        self.gated = cfg.gated_mlp if gated is None else gated
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp, dtype=cfg.dtype))
        if self.gated and cfg.act_fn == "solu_ln":
            raise ValueError("a gated MLP with act_fn='solu_ln' is not supported")
        if self.gated:  # SwiGLU and friends: act(x W_gate) * (x W_in) + b_in (TransformerLens GatedMLP)
            self.W_gate = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp, dtype=cfg.dtype))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp, dtype=cfg.dtype))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model, dtype=cfg.dtype))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model, dtype=cfg.dtype))
        self.act_fn = ACTIVATIONS[cfg.act_fn]
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        if self.gated:
            self.hook_pre_linear = HookPoint()  # [batch, pos, d_mlp]
        if cfg.act_fn == "solu_ln":
            self.hook_mid = HookPoint()  # [batch, pos, d_mlp]
            self.ln = (LayerNorm if cfg.normalization_type == "LN" else LayerNormPre)(cfg, cfg.d_mlp)
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            pre = self.hook_pre(x @ self.W_gate)  # [batch, pos, d_mlp]
            pre_linear = self.hook_pre_linear(x @ self.W_in)  # [batch, pos, d_mlp]
            post = self.hook_post(self.act_fn(pre) * pre_linear + self.b_in)
            return post @ self.W_out + self.b_out
        pre = self.hook_pre(x @ self.W_in + self.b_in)  # [batch, pos, d_mlp]
        if hasattr(self, "ln"):
            post = self.hook_post(self.ln(self.hook_mid(self.act_fn(pre))))
        else:
            post = self.hook_post(self.act_fn(pre))
        return post @ self.W_out + self.b_out  # [batch, pos, d_model]
