"""Attention masks for padded batches, position ids counted from the first real token, and ALiBi biases.

TransformerLens 2.x semantics: an attention mask is [batch, pos] with 1 for a real token and 0 for padding;
only the leading pads (left padding) or trailing pads (right padding) count as padding. A position id is the
number of real tokens before it, so a left-padded prompt gets the same positions as unpadded.
"""

from __future__ import annotations

from typing import Any

import torch


def get_attention_mask(
    tokenizer: Any, tokens: torch.Tensor, prepend_bos: bool, padding_side: str | None = None
) -> torch.Tensor:
    """[batch, pos] of 1 (attend) and 0 (padding) for tokens padded on `padding_side` (default: the tokenizer's).

    Without a tokenizer every position is real. Left padding with BOS == pad keeps the last leading pad,
    which is the prepended BOS, as a real token.
    """
    attention_mask = torch.ones_like(tokens)
    if tokenizer is None or tokenizer.pad_token_id is None:
        return attention_mask
    side = padding_side or tokenizer.padding_side
    if side not in ("left", "right"):
        raise ValueError(f"padding_side={side!r} is invalid: expected 'left' or 'right'")
    is_real = tokens.ne(tokenizer.pad_token_id).long()  # [batch, pos]
    if side == "right":
        is_padding = is_real.flip(-1).cumsum(-1).flip(-1) == 0  # no real token at or after it
        return attention_mask.masked_fill(is_padding, 0)
    is_padding = is_real.cumsum(-1) == 0  # no real token at or before it
    attention_mask = attention_mask.masked_fill(is_padding, 0)
    if prepend_bos and tokenizer.bos_token_id == tokenizer.pad_token_id:
        last_pad = (is_padding.sum(-1) - 1).clamp(min=0)  # [batch]
        attention_mask[torch.arange(tokens.shape[0], device=tokens.device), last_pad] = 1
    return attention_mask


def get_offset_position_ids(past_kv_pos_offset: int, attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids [batch, pos - offset] of the positions after the cached ones: real tokens before each one.

    `attention_mask` covers the cached and the new positions; leading pads get position 0.
    """
    position_ids = attention_mask.long().cumsum(dim=1) - 1  # [batch, pos]
    return position_ids.clamp(min=0)[:, past_kv_pos_offset:]


def alibi_slopes(n_heads: int, device: torch.device | str | None = None) -> torch.Tensor:
    """ALiBi's per-head multipliers [head]: the geometric sequence starting at (and with ratio) 2^(-8/n_heads)."""
    start = 2 ** (-8 / n_heads)
    return start * start ** torch.arange(n_heads, device=device, dtype=torch.float32)


def alibi_bias(
    n_heads: int, n_query: int, n_key: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """ALiBi bias [head, query_pos, key_pos]: slope * min(key - query, 0), queries being the last n_query keys."""
    query = torch.arange(n_key - n_query, n_key, device=device)[:, None]
    key = torch.arange(n_key, device=device)[None, :]
    distance = (key - query).clamp(max=0).to(torch.float32)  # [query_pos, key_pos]
    bias = alibi_slopes(n_heads, device)[:, None, None] * distance[None]
    return bias if dtype is None else bias.to(dtype)
