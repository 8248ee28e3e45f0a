"""Next-token loss and accuracy with TransformerLens's signatures (`utils.lm_cross_entropy_loss`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def lm_cross_entropy_loss(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    per_token: bool = False,
) -> torch.Tensor:
    """Next-token cross-entropy: logits[:, i] predicts tokens[:, i + 1]. Per token: [batch, pos - 1].

    With `attention_mask` [batch, pos] (1 = real token), predictions from or of a masked token count 0
    and the mean is over the rest, as in TransformerLens.
    """
    logits = logits[..., :-1, :]
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()  # 16-bit logits: the softmax in float32
    log_probs = F.log_softmax(logits, dim=-1)  # [batch, pos - 1, vocab]
    predicted = log_probs.gather(-1, tokens[..., 1:, None]).squeeze(-1)  # [batch, pos - 1]
    if attention_mask is not None:
        next_token_mask = attention_mask[:, :-1].bool() & attention_mask[:, 1:].bool()
        predicted = predicted * next_token_mask
        n_tokens = next_token_mask.sum()
    else:
        n_tokens = predicted.numel()
    return -predicted if per_token else -predicted.sum() / n_tokens


def lm_accuracy(logits: torch.Tensor, tokens: torch.Tensor, per_token: bool = False) -> torch.Tensor:
    """Top-1 next-token accuracy: the fraction of positions whose argmax is the next token, or the
    boolean per position [batch, pos - 1] with `per_token`."""
    correct = logits.argmax(-1)[:, :-1] == tokens[:, 1:]
    return correct if per_token else correct.sum() / correct.numel()
