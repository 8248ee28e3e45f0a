"""ACDC (Conmy et al. 2023): prune the graph edge by edge with exact patching.

Receivers are visited in reverse topological order (logits first, layer 0 last); each incoming edge is
ablated in turn and stays ablated when the metric moves by less than `threshold` from its current value.
A node none of whose outgoing edges survived is cut off from the logits: its incoming edges go without a
run. One forward per tested edge; `threshold` is a fraction of |metric(model) - metric(all ablated)|, so
one value means the same on every model and metric.
"""

from __future__ import annotations

import torch

from ...model import HookedTransformer
from .circuit import Ablation, Circuit
from .interventions import Metric


def acdc(
    model: HookedTransformer,
    clean: torch.Tensor,
    corrupted: torch.Tensor | None,
    metric: Metric,
    threshold: float = 0.01,
    ablation: str = "corrupted",
    experiment: Ablation | None = None,
) -> Circuit:
    """The pruned circuit; its `scores` are each tested edge's |metric change| when it was tested
    (0 for edges cut without a test), usable as a ranking."""
    if not threshold >= 0:
        raise ValueError(f"threshold={threshold} is invalid: expected a fraction >= 0 of the metric's range")
    exp = experiment or Ablation(model, clean, corrupted, metric, ablation)
    graph = exp.graph
    tau = threshold * abs(exp.clean_metric - exp.ablated_metric)
    keep = graph.valid.clone()  # [sender, receiver]
    scores = torch.zeros(keep.shape, dtype=torch.float64)
    current = exp.clean_metric
    n_up = graph.n_upstream
    for r in reversed(range(len(graph.receivers))):
        fed = graph.receiver_senders(r)  # its head (a KV head's whole query group), its MLP; none for logits
        if fed and not keep[fed].any():
            keep[:, r] = False  # dead node: nothing it computes reaches the logits
            continue
        for s in reversed(range(int(n_up[r]))):
            keep[s, r] = False
            value = float(exp.metrics(graph.from_grid(keep)[None])[0])
            scores[s, r] = abs(value - current)
            if abs(value - current) < tau:
                current = value
            else:
                keep[s, r] = True
    return Circuit(graph, graph.from_grid(keep), graph.from_grid(scores))
