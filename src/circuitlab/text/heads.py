"""Head scores on real text: what each head attends to in actual English, and which predictions need it.

On windows of held-out text, for every query position q:
- previous-token: attention to q - 1;
- duplicate-token: attention to the latest earlier occurrence j of the same token;
- induction: attention to j + 1, the token that followed that earlier occurrence (when j + 1 < q).
Baseline: a uniform causal head reading the same keys. `induction_positions` marks the predictions an
induction head can make (the token after the earlier occurrence is indeed the next token).
"""

from __future__ import annotations

import torch

from ..analysis.heads import HeadScores, _uniform_pattern, attention_to
from ..model import HookedTransformer


def earlier_occurrence(tokens: torch.Tensor) -> torch.Tensor:
    """Position of the latest earlier occurrence of each token, or -1: [batch, pos]."""
    n_pos = tokens.shape[1]
    same = tokens[:, :, None] == tokens[:, None, :]  # [batch, query, key]
    before = torch.ones(n_pos, n_pos, dtype=torch.bool).tril(-1)  # key < query
    keys = torch.arange(n_pos)[None, None, :]
    return torch.where(same & before, keys, -1).amax(-1)


def induction_positions(tokens: torch.Tensor) -> torch.Tensor:
    """[batch, pos] bool: predictions at q where the token after q's earlier occurrence equals tokens[q + 1]."""
    prev = earlier_occurrence(tokens)
    following = tokens.gather(1, (prev + 1).clamp(max=tokens.shape[1] - 1))
    nxt = torch.cat([tokens[:, 1:], torch.full_like(tokens[:, :1], -1)], dim=1)
    pos = torch.arange(tokens.shape[1])[None, :]
    return (prev >= 0) & (prev + 1 < pos) & (following == nxt)


@torch.no_grad()
def text_head_scores(model: HookedTransformer, tokens: torch.Tensor, skip_first: int = 1) -> HeadScores:
    """Previous-token, duplicate-token and induction attention on real text, [layer, head] each, with the
    uniform-attention baseline. Queries before `skip_first` (the BOS) are ignored."""
    _, cache = model.run_with_cache(tokens.to(model.device), names_filter=lambda n: n.endswith("hook_pattern"))
    pattern = torch.stack([cache["pattern", l] for l in range(model.cfg.n_layers)]).float().cpu()
    batch, n_pos = tokens.shape
    pos = torch.arange(n_pos)[None, :].expand(batch, -1)
    prev = earlier_occurrence(tokens)
    keys = {
        "previous_token": pos - 1,
        "duplicate_token": prev,
        "induction": torch.where((prev >= 0) & (prev + 1 < pos), prev + 1, -1),
    }
    uniform = _uniform_pattern(n_pos, model.cfg.causal)
    scores, baselines = {}, {}
    for name, key in keys.items():
        key = torch.where(pos >= skip_first, key, -1)
        scores[name] = attention_to(pattern, key)
        base = attention_to(uniform.expand(1, batch, 1, n_pos, n_pos), key)  # [1, 1]
        baselines[name] = base.expand(model.cfg.n_layers, model.cfg.n_heads)
    return HeadScores(scores, baselines)
