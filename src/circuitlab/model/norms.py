"""Normalisation layers with TransformerLens hooks: `hook_scale` [batch, pos, 1] and `hook_normalized`.

As in TransformerLens 2.x, LayerNorm's `hook_normalized` is its output (after weight and bias), while
RMSNorm's is taken before the weight.
The `Pre` variants have no weights, for models whose weights were folded into the next layer.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import HookedTransformerConfig
from .hook_points import HookPoint


class _Norm(nn.Module):
    center: bool = True  # LayerNorm subtracts the mean; RMSNorm does not.
    learned: bool = True

    def __init__(self, cfg: HookedTransformerConfig | dict, length: int | None = None) -> None:
        super().__init__()
        cfg = HookedTransformerConfig.unwrap(cfg)
        self.eps = cfg.eps
        self.length = length or cfg.d_model
        if self.learned:
            self.w = nn.Parameter(torch.ones(self.length, dtype=cfg.dtype))
            if self.center:
                self.b = nn.Parameter(torch.zeros(self.length, dtype=cfg.dtype))
        self.hook_scale = HookPoint()  # [batch, pos, 1]
        self.hook_normalized = HookPoint()  # [batch, pos, length]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_dtype = x.dtype
        if in_dtype not in (torch.float32, torch.float64):
            x = x.float()  # Statistics in at least float32, as TransformerLens does.
        if self.center:
            x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        x = x / scale
        if not self.learned:
            return self.hook_normalized(x.to(in_dtype))
        if self.center:  # LayerNorm: hook_normalized is the output, after w and b (TransformerLens 2.x)
            return self.hook_normalized((x * self.w + self.b).to(in_dtype))
        return self.hook_normalized(x.to(in_dtype)) * self.w  # RMSNorm: hook_normalized before w


class LayerNorm(_Norm):
    """(x - mean) / sqrt(var + eps) * w + b."""


class LayerNormPre(_Norm):
    """LayerNorm without weights: (x - mean) / sqrt(var + eps)."""

    learned = False


class RMSNorm(_Norm):
    """x / sqrt(mean(x^2) + eps) * w."""

    center = False


class RMSNormPre(_Norm):
    """RMSNorm without weights."""

    center = False
    learned = False


NORMS: dict[str | None, type[_Norm]] = {
    "LN": LayerNorm,
    "LNPre": LayerNormPre,
    "RMS": RMSNorm,
    "RMSPre": RMSNormPre,
}


def make_norm(cfg: HookedTransformerConfig, length: int | None = None) -> nn.Module:
    """The config's normalisation layer, or an identity when `normalization_type` is None."""
    if cfg.normalization_type is None:
        return nn.Identity()
    return NORMS[cfg.normalization_type](cfg, length)
