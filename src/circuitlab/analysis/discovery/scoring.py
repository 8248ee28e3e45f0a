"""Scoring a discovered ranking against a known circuit."""

from __future__ import annotations

import torch


def roc_auc(scores: torch.Tensor, truth: torch.Tensor) -> float:
    """Area under the ROC curve of ranking edges by |score| to find the `truth` edges (bool [n_edges]):
    the probability that a true edge outranks a false one, ties counting half (Mann-Whitney U)."""
    truth = torch.as_tensor(truth, dtype=torch.bool).cpu()
    s = scores.detach().abs().double().cpu()
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"ROC AUC needs true and false edges, got {n_pos} true and {n_neg} false")
    _, inverse, counts = torch.unique(s, return_inverse=True, return_counts=True)  # sorted distinct values
    last = counts.cumsum(0).double()  # 1-based rank of each value's last copy
    ranks = (last - (counts.double() - 1) / 2)[inverse]  # tied scores share their mean rank
    u = ranks[truth].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))
