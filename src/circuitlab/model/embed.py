"""Token embedding, learned positional embedding and unembedding, with TransformerLens weight names."""

from __future__ import annotations

import torch
from torch import nn

from .config import HookedTransformerConfig


class Embed(nn.Module):
    def __init__(self, cfg: HookedTransformerConfig) -> None:
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model, dtype=cfg.dtype))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.W_E[tokens]  # [batch, pos] -> [batch, pos, d_model]


class PosEmbed(nn.Module):
    def __init__(self, cfg: HookedTransformerConfig) -> None:
        super().__init__()
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model, dtype=cfg.dtype))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, n_pos = tokens.shape
        return self.W_pos[:n_pos].expand(batch, n_pos, -1)  # [batch, pos, d_model]


class Unembed(nn.Module):
    def __init__(self, cfg: HookedTransformerConfig) -> None:
        super().__init__()
        self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab_out, dtype=cfg.dtype))
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab_out, dtype=cfg.dtype))

    def forward(self, resid: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.b_U, resid.flatten(0, -2), self.W_U).view(*resid.shape[:-1], -1)  # -> d_vocab_out
