"""Edge attribution: a score for every edge from gradients instead of one patched run per edge.

EAP (Syed et al. 2023): score(s -> r) = (a_s^ablated - a_s^clean) . d metric / d input_r, summed over
batch and positions, with the gradient taken on the clean run: two forwards and one backward for every
edge at once. It is the first-order estimate of metric(edge ablated) - metric(clean).

EAP-IG (Hanna et al. 2024): the same product with the gradient averaged over `steps` points on the
straight path from the ablated to the clean input embedding (midpoint rule), the integrated gradients of
Sundararajan et al. 2017 taken per edge. Where a receiver's input moves linearly along that path the
scores of the edges into it add up to the metric's exact change (completeness).
"""

from __future__ import annotations

import torch

from ...model import HookedTransformer
from .graph import Graph
from .interventions import Metric, receiver_gradients, sender_activations

METHODS = ("eap", "eap-ig")


def ablated_activations(
    model: HookedTransformer, clean: torch.Tensor, corrupted: torch.Tensor | None, ablation: str, graph: Graph
) -> torch.Tensor:
    """The value an ablated sender takes: [batch or 1, pos, sender, d_model].

    "corrupted": its output on the corrupted tokens (same shape as clean); "mean": its mean output over
    the batch of `corrupted` (or of `clean` when no corrupted tokens are given), per position."""
    if ablation not in ("corrupted", "mean"):
        raise ValueError(f"ablation={ablation!r} is invalid: expected 'corrupted' or 'mean'")
    if ablation == "corrupted":
        if corrupted is None:
            raise ValueError("ablation='corrupted' needs corrupted tokens (or use ablation='mean')")
        if corrupted.shape != clean.shape:
            raise ValueError(
                f"clean {tuple(clean.shape)} and corrupted {tuple(corrupted.shape)} tokens must have the same shape"
            )
        return sender_activations(model, corrupted, graph)
    reference = clean if corrupted is None else corrupted
    if reference.shape[1] != clean.shape[1]:
        raise ValueError(f"mean ablation needs {clean.shape[1]} positions, got {reference.shape[1]}")
    return sender_activations(model, reference, graph).mean(0, keepdim=True)


def edge_attribution(
    model: HookedTransformer,
    clean: torch.Tensor,
    corrupted: torch.Tensor | None,
    metric: Metric,
    method: str = "eap",
    steps: int = 20,
    ablation: str = "corrupted",
) -> torch.Tensor:
    """Per-edge scores [n_edges] in `Graph.from_model(model).edge_index` order: the estimated change
    metric(edge ablated) - metric(clean). Rank by absolute value. `metric(logits [batch, pos, vocab])`
    returns one differentiable number."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is invalid: expected one of {list(METHODS)}")
    if steps < 1:
        raise ValueError(f"steps={steps} is invalid: expected a positive number of integration steps")
    graph = Graph.from_model(model)
    ablated = ablated_activations(model, clean, corrupted, ablation, graph)  # [b|1, pos, sender, d]
    if method == "eap":
        acts, grads, _ = receiver_gradients(model, clean, metric, graph)
    else:
        acts = sender_activations(model, clean, graph)
        start, end = ablated[:, :, 0], acts[:, :, 0]  # input embeddings [b|1, pos, d], ablated -> clean
        grads = torch.zeros(*clean.shape, len(graph.receivers), model.cfg.d_model, dtype=acts.dtype)
        for alpha in (torch.arange(steps, dtype=acts.dtype) + 0.5) / steps:
            point = (start + alpha * (end - start)).expand_as(end)
            grads += receiver_gradients(model, clean, metric, graph, input_override=point)[1] / steps
    delta = (ablated - acts).to(grads.dtype)  # [batch, pos, sender, d_model]
    scores = torch.einsum("bpsd,bprd->sr", delta, grads)  # [sender, receiver]
    return graph.from_grid(scores)
