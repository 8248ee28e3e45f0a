"""Token embedding, learned positional embedding and unembedding, with TransformerLens weight names."""

from __future__ import annotations

import torch
from torch import nn

from .config import HookedTransformerConfig
from .masks import get_offset_position_ids


class Embed(nn.Module):
    def __init__(self, cfg: HookedTransformerConfig | dict) -> None:
        super().__init__()
        cfg = HookedTransformerConfig.unwrap(cfg)
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model, dtype=cfg.dtype))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.W_E[tokens]  # [batch, pos] -> [batch, pos, d_model]


class PosEmbed(nn.Module):
    def __init__(self, cfg: HookedTransformerConfig | dict) -> None:
        super().__init__()
        cfg = HookedTransformerConfig.unwrap(cfg)
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model, dtype=cfg.dtype))

    def forward(
        self, tokens: torch.Tensor, past_kv_pos_offset: int = 0, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[batch, pos, d_model] embeddings of positions past_kv_pos_offset onwards.

        With an attention mask [batch, offset + pos] a position counts the real tokens before it (left padding
        leaves positions unchanged) and padding gets a zero embedding, as in TransformerLens.
        """
        batch, n_pos = tokens.shape
        if attention_mask is None:
            return self.W_pos[past_kv_pos_offset : past_kv_pos_offset + n_pos].expand(batch, n_pos, -1)
        position_ids = get_offset_position_ids(past_kv_pos_offset, attention_mask).to(self.W_pos.device)
        padding = ~attention_mask[:, past_kv_pos_offset : past_kv_pos_offset + n_pos].bool().to(self.W_pos.device)
        return self.W_pos[position_ids].masked_fill(padding[..., None], 0.0)  # [batch, pos, d_model]


class Unembed(nn.Module):
    def __init__(self, cfg: HookedTransformerConfig | dict) -> None:
        super().__init__()
        cfg = HookedTransformerConfig.unwrap(cfg)
        self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab_out, dtype=cfg.dtype))
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab_out, dtype=cfg.dtype))

    def forward(self, resid: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.b_U, resid.flatten(0, -2), self.W_U).view(*resid.shape[:-1], -1)  # -> d_vocab_out
