"""Is it a language model? Held-out loss against n-gram baselines, and the in-context-learning score.

- `unigram_loss`, `bigram_loss`: cross-entropy (nats per token) on the held-out stream of count
  models fit on the training stream (add-one unigram; bigram interpolated with the unigram, its
  weight chosen on the held-out text itself, which can only flatter the baseline).
- `lm_loss`: the model's loss per position over consecutive held-out windows.
- `icl_score` (Olsson et al. 2022): loss late in the context minus loss early in it (nats; negative
  means later tokens are predicted better, i.e. the model uses its context). On few windows the tokens
  themselves bias it: `unigram_icl` is the score of a context-free model on the same windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..tasks.base import Batch, per_position_loss

LAMBDAS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def _unigram_logp(train: torch.Tensor, vocab: int) -> torch.Tensor:
    counts = torch.bincount(train, minlength=vocab).double() + 1.0
    return (counts / counts.sum()).log()


def unigram_loss(train: torch.Tensor, heldout: torch.Tensor, vocab: int) -> float:
    """Held-out nats per token of an add-one unigram model of `train` (1-D token streams)."""
    return float(-_unigram_logp(train, vocab)[heldout[1:]].mean())


def bigram_loss(train: torch.Tensor, heldout: torch.Tensor, vocab: int) -> tuple[float, float]:
    """(nats per token, interpolation weight) of the best bigram/unigram mixture on the held-out stream."""
    pairs = train[:-1] * vocab + train[1:]
    keys, counts = torch.unique(pairs, return_counts=True)  # sparse counts: vocab^2 never materialised
    prev_counts = torch.bincount(train[:-1], minlength=vocab).double()
    query = heldout[:-1] * vocab + heldout[1:]
    where = torch.searchsorted(keys, query).clamp(max=len(keys) - 1)
    pair_count = torch.where(keys[where] == query, counts[where].double(), torch.zeros(()))
    p_bigram = pair_count / prev_counts[heldout[:-1]].clamp(min=1)  # 0 for an unseen previous token
    p_unigram = _unigram_logp(train, vocab).exp()[heldout[1:]]
    losses = {lam: float(-(lam * p_bigram + (1 - lam) * p_unigram).log().mean()) for lam in LAMBDAS}
    best = min(losses, key=losses.__getitem__)
    return losses[best], best


@dataclass
class LMLoss:
    loss: float  # mean nats per scored token
    per_position: list[float]  # mean loss of the prediction at each position


@torch.no_grad()
def lm_loss(model: torch.nn.Module, batch: Batch, batch_size: int = 32) -> LMLoss:
    """Loss of `model` on the windows of `batch`, in chunks of `batch_size` windows."""
    total = torch.zeros(batch.tokens.shape[1], dtype=torch.float64)
    count = torch.zeros_like(total)
    device = next(model.parameters()).device
    for i in range(0, len(batch), batch_size):
        part = Batch(batch.tokens[i : i + batch_size], batch.targets[i : i + batch_size],
                     batch.loss_mask[i : i + batch_size]).to(device)  # fmt: skip
        total += per_position_loss(model(part.tokens), part).sum(0).double().cpu()
        count += part.loss_mask.sum(0).double().cpu()
    per_pos = torch.where(count > 0, total / count.clamp(min=1), float("nan"))
    return LMLoss(float(total.sum() / count.sum()), per_pos.tolist())


def unigram_icl(train: torch.Tensor, batch: Batch, vocab: int, early: int = 50) -> float:
    """The ICL score an add-one unigram model (which ignores its context) gets on the same windows: what the
    particular tokens at the early and late positions contribute on their own. Near 0 on many windows."""
    loss = -_unigram_logp(train, vocab)[batch.targets].float()  # [window, pos]
    mean = (loss * batch.loss_mask).sum(0) / batch.loss_mask.sum(0).clamp(min=1)  # [pos]
    per_position = torch.where(batch.loss_mask.any(0), mean, float("nan"))
    return icl_score(per_position.tolist(), early=early)


def icl_score(per_position: list[float], early: int = 50, late: int | None = None, window: int = 5) -> float:
    """Mean loss around prediction position `late` (default: the last scored ones) minus around `early`."""
    losses = torch.tensor(per_position, dtype=torch.float64)
    valid = ~losses.isnan()
    last = int(valid.nonzero().max())
    late = last - window if late is None else late
    if not window <= early < late <= last:
        raise ValueError(f"icl_score needs window={window} <= early < late <= {last}, got early={early}, late={late}")

    def around(p: int) -> float:
        return float(losses[max(p - window, 0) : p + window + 1][valid[max(p - window, 0) : p + window + 1]].mean())

    return around(late) - around(early)
