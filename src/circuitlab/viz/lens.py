"""Logit-lens views: what the residual stream before each layer would predict if read out directly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ._common import SEQUENTIAL, go, layout, to_numpy, token_labels
from .predictions import str_tokens


@torch.no_grad()
def lens_log_probs(cache: Any) -> tuple[torch.Tensor, list[str]]:
    """Log-probabilities read from the stream before each layer and after the last, at every position:
    ([component, batch, pos, d_vocab_out], labels). The final norm is recomputed on each partial stream,
    as in `circuitlab.analysis.logit_lens`."""
    model = cache.model
    stack, labels = cache.accumulated_resid(return_labels=True)  # [component, batch, pos, d_model]
    normed = model.ln_final(stack) if model.cfg.normalization_type is not None else stack
    return model.unembed(normed).float().log_softmax(-1), labels


def logit_lens_table(
    cache: Any, tokens: Any, pos: int = -1, batch_index: int = 0, top_k: int = 5, answer: int | None = None
) -> Any:
    """A table with one row per layer: the top-k tokens the stream predicts at `pos` (with probabilities),
    and, given `answer` (a token id), that token's probability and rank there."""
    from ..analysis import logit_lens

    logits, labels = logit_lens(cache, pos=pos)  # [component, batch, d_vocab_out]
    probs = logits[:, batch_index].float().softmax(-1)  # [component, vocab]
    top_p, top_i = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    model = cache.model
    words = np.array(str_tokens(model, top_i.flatten()), dtype=object).reshape(top_i.shape)
    columns = ["stream", *(f"top {i + 1}" for i in range(top_i.shape[1]))]
    cells = [
        labels,
        *([f"{words[c, i]!r} {top_p[c, i]:.3f}" for c in range(len(labels))] for i in range(top_i.shape[1])),
    ]
    if answer is not None:
        p_answer = probs[:, answer]
        rank = (probs > p_answer[:, None]).sum(-1)
        columns += [f"p({str_tokens(model, [answer])[0]!r})", "rank (0 = top)"]
        cells += [[f"{float(p):.3f}" for p in p_answer], rank.tolist()]
    ids = torch.as_tensor(tokens)
    seq = str_tokens(model, ids.reshape(-1, ids.shape[-1])[batch_index])
    where = seq[pos] if -len(seq) <= pos < len(seq) else pos
    fig = go().Figure(
        go().Table(
            header=dict(values=columns, fill_color="#f0f0f0", align="left"),
            cells=dict(values=cells, align="left"),
        )
    )
    return layout(fig, f"logit lens at position {pos} (token {where!r})", height=140 + 28 * len(labels), width=900)


def logit_lens_heatmap(
    cache: Any, tokens: Any, batch_index: int = 0, str_toks: Sequence[str] | None = None, title: str | None = None
) -> Any:
    """Probability of the actual next token, read from the stream before each layer, at every position:
    a [component, pos] heatmap (rows: the stream entering each layer, then the final output)."""
    log_probs, labels = lens_log_probs(cache)
    ids = torch.as_tensor(tokens).reshape(-1, log_probs.shape[2])[batch_index].to(log_probs.device)
    nxt = ids[1:]
    lp = log_probs[:, batch_index, :-1]  # [component, pos - 1, vocab]
    p_next = lp.gather(-1, nxt[None, :, None].expand(lp.shape[0], -1, 1))[..., 0].exp()  # [component, pos - 1]
    words = list(str_toks) if str_toks is not None else str_tokens(cache.model, ids)
    z = to_numpy(p_next)
    fig = go().Figure(
        go().Heatmap(
            z=z,
            x=token_labels(words[:-1], z.shape[1]),
            y=labels,
            zmin=0.0,
            zmax=1.0,
            colorscale=SEQUENTIAL,
            colorbar_title="p(next)",
            customdata=np.array([words[1:]] * z.shape[0], dtype=object),
            hovertemplate="%{y}, position %{x}<br>p(%{customdata}) = %{z:.3f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", title_text="stream")
    fig.update_xaxes(title_text="position (predicting the next token)", tickangle=-45)
    title = title or "logit lens: probability of the next token"
    return layout(fig, title, width=max(500, 160 + 24 * z.shape[1]), height=max(300, 140 + 30 * z.shape[0]))
