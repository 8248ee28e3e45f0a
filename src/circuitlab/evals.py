"""TransformerLens's `evals` for induction: `induction_loss` and repeated random tokens to probe it with.

`induction_loss` has TransformerLens's signature and definition (loss on the second half of random
tokens repeated twice); `make_repeated_tokens` (alias `generate_repeated_tokens`, the ARENA name) builds
[BOS, x, x] batches. Both draw from torch's global generator, as those do, so a `torch.manual_seed`
before the call gives the same tokens; both read the model's own BOS id.
"""

from __future__ import annotations

from typing import Any

import torch

from .analysis.heads import model_bos_id
from .model import HookedTransformer
from .model.losses import lm_cross_entropy_loss
from .utils import override_or_use_default_value


def _bos(model: HookedTransformer, tokenizer: Any = None) -> int:
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    bos = getattr(tokenizer, "bos_token_id", None) if tokenizer is not None else None
    return bos if bos is not None else model_bos_id(model)


def make_repeated_tokens(
    model: HookedTransformer,
    seq_len: int,
    batch: int = 1,
    prepend_bos: bool | None = None,
    token_range: tuple[int, int] | None = None,
) -> torch.Tensor:
    """[batch, 1 + 2 * seq_len]: BOS, then seq_len random tokens, then the same tokens again.

    Tokens are drawn uniformly from `token_range` = [low, high) (default the whole vocabulary), like
    ARENA's `generate_repeated_tokens(model, seq_len, batch)`; without BOS (`prepend_bos=False`) the
    result is [batch, 2 * seq_len].
    """
    low, high = token_range if token_range is not None else (0, model.cfg.d_vocab)
    if not 0 <= low < high <= model.cfg.d_vocab:
        raise ValueError(f"token_range=({low}, {high}) is invalid: expected 0 <= low < high <= {model.cfg.d_vocab}")
    half = torch.randint(low, high, (batch, seq_len), dtype=torch.int64)
    parts = [half, half]
    if override_or_use_default_value(model.cfg.default_prepend_bos, prepend_bos):
        parts.insert(0, torch.full((batch, 1), _bos(model), dtype=torch.int64))
    return torch.cat(parts, dim=-1).to(model.device)


generate_repeated_tokens = make_repeated_tokens


@torch.no_grad()
def induction_loss(
    model: HookedTransformer,
    tokenizer: Any = None,
    batch_size: int = 4,
    subseq_len: int = 384,
    prepend_bos: bool | None = None,
    device: str | torch.device | None = "cuda",
) -> torch.Tensor:
    """Mean next-token loss on the second copy of random tokens repeated twice (TransformerLens's definition).

    Tokens [batch_size, 2 * subseq_len] come from [100, 20000) as in TransformerLens when the vocabulary
    holds that range, else from the whole vocabulary; with BOS (`prepend_bos`, default
    `cfg.default_prepend_bos`) the first token is overwritten by it. The loss is over the predictions
    from position subseq_len + 1 on. `device` is accepted for the signature; the tokens go to the model's device.
    """
    if 2 * subseq_len > model.cfg.n_ctx:
        raise ValueError(
            f"2 * subseq_len = {2 * subseq_len} tokens do not fit the context (n_ctx={model.cfg.n_ctx}); "
            "pass a smaller subseq_len"
        )
    low, high = (100, 20000) if model.cfg.d_vocab >= 20000 else (0, model.cfg.d_vocab)
    first_half = torch.randint(low, high, (batch_size, subseq_len))
    tokens = torch.cat([first_half, first_half], dim=1).to(model.device)  # [batch, 2 * subseq_len]
    if override_or_use_default_value(model.cfg.default_prepend_bos, prepend_bos):
        tokens[:, 0] = _bos(model, tokenizer)
    logits = model(tokens, return_type="logits")
    per_token = lm_cross_entropy_loss(logits, tokens, per_token=True)  # [batch, 2 * subseq_len - 1]
    return per_token[:, subseq_len + 1 :].mean()
