"""Circuits (sets of edges) and how faithful they are.

`Ablation` holds one experiment (model, clean tokens, ablated activations, metric) and evaluates many
circuits at once; faithfulness = (metric(circuit) - metric(all ablated)) / (metric(model) - metric(all
ablated)): 1 = the model's behaviour, 0 = nothing of it left.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...model import HookedTransformer
from .attribution import ablated_activations
from .graph import Graph
from .interventions import Metric, run_with_edges


@dataclass
class Circuit:
    """A set of edges of `graph` (`mask` [n_edges] bool in the graph's edge order), with optional scores."""

    graph: Graph
    mask: torch.Tensor
    scores: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.mask = torch.as_tensor(self.mask, dtype=torch.bool).cpu()
        if self.mask.shape != (self.graph.n_edges,):
            n, got = self.graph.n_edges, tuple(self.mask.shape)
            raise ValueError(f"a circuit mask needs one entry per edge ({n}), got shape {got}")

    @classmethod
    def from_edges(cls, graph: Graph, edges: list[str], scores: torch.Tensor | None = None) -> Circuit:
        mask = torch.zeros(graph.n_edges, dtype=torch.bool)
        names = {n: i for i, n in enumerate(graph.edge_names)}
        for e in edges:
            if e not in names:
                graph.edge_id(e)  # raises with close matches
            mask[names[e]] = True
        return cls(graph, mask, scores)

    @classmethod
    def top_k(cls, graph: Graph, scores: torch.Tensor, k: int) -> Circuit:
        """The k edges with the largest |score|."""
        mask = torch.zeros(graph.n_edges, dtype=torch.bool)
        mask[ranking(scores)[:k]] = True
        return cls(graph, mask, scores)

    @property
    def edges(self) -> list[str]:
        names = self.graph.edge_names
        return [names[i] for i in self.mask.nonzero().flatten().tolist()]

    def __len__(self) -> int:
        return int(self.mask.sum())

    def complement(self) -> Circuit:
        return Circuit(self.graph, ~self.mask, self.scores)

    def to_dict(self) -> dict:
        names = self.graph.edge_names
        out = {"n_edges": len(self), "n_graph_edges": self.graph.n_edges, "edges": self.edges}
        if self.scores is not None:
            out["scores"] = {names[i]: float(self.scores[i]) for i in range(len(names))}
        return out


def ranking(scores: torch.Tensor) -> torch.Tensor:
    """Edge ids by decreasing |score| (ties by edge order)."""
    return torch.sort(scores.abs().cpu(), descending=True, stable=True).indices


@dataclass
class Curve:
    """Faithfulness of the top-k circuits of a ranking."""

    k: list[int]
    faithfulness: list[float]
    n_edges: int
    area: float = field(init=False)

    def __post_init__(self) -> None:
        x = torch.tensor(self.k, dtype=torch.float64) / max(self.n_edges, 1)
        self.area = float(torch.trapezoid(torch.tensor(self.faithfulness, dtype=torch.float64), x))

    def minimal(self, level: float) -> int | None:
        """Fewest edges (among the evaluated k) whose circuit reaches `level` faithfulness."""
        return next((k for k, f in zip(self.k, self.faithfulness, strict=True) if f >= level), None)

    def to_dict(self) -> dict:
        return {
            "k": self.k,
            "faithfulness": self.faithfulness,
            "area": self.area,
            "minimal_0.8": self.minimal(0.8),
            "minimal_0.9": self.minimal(0.9),
        }


class Ablation:
    """One discovery experiment: run any circuit with every edge outside it ablated."""

    def __init__(
        self,
        model: HookedTransformer,
        clean: torch.Tensor,
        corrupted: torch.Tensor | None,
        metric: Metric,
        ablation: str = "corrupted",
        chunk: int | None = None,
        memory_budget: float = 2**28,
    ) -> None:
        """`chunk` circuits run together (default: as many as fit `memory_budget` bytes of the per-run
        sender buffer [circuit, batch, pos, sender, d_model], at least 1 and at most 64)."""
        self.model, self.clean, self.metric = model, clean, metric
        self.graph = Graph.from_model(model)
        per_circuit = clean.numel() * len(self.graph.senders) * model.cfg.d_model * model.cfg.dtype.itemsize
        self.chunk = chunk or int(max(1, min(64, memory_budget // per_circuit)))
        self.ablated = ablated_activations(model, clean, corrupted, ablation, self.graph)
        full = torch.ones(2, self.graph.n_edges, dtype=torch.bool)
        full[1] = False
        self.clean_metric, self.ablated_metric = self.metrics(full).tolist()
        if abs(self.clean_metric - self.ablated_metric) < 1e-9:
            raise ValueError(
                f"the metric is {self.clean_metric:.4g} with and without every edge ablated: the ablation changes"
                " nothing the metric sees, so no circuit can be scored (choose other corrupted tokens or metric)"
            )

    def metrics(self, masks: torch.Tensor) -> torch.Tensor:
        """Metric of each circuit in `masks` [circuit, n_edges] (bool): [circuit]."""
        masks = torch.as_tensor(masks, dtype=torch.bool)
        out = []
        for chunk in masks.split(self.chunk):
            logits = run_with_edges(self.model, self.clean, self.ablated, self.graph.to_grid(chunk.float()), self.graph)
            values = self.metric(logits)
            if values.shape != (len(chunk),):  # a metric of one batch only: call it per circuit
                values = torch.stack([self.metric(x) for x in logits])
            out.append(values.detach().double().cpu())
        return torch.cat(out)

    def faithfulness(self, masks: torch.Tensor) -> torch.Tensor:
        return (self.metrics(masks) - self.ablated_metric) / (self.clean_metric - self.ablated_metric)

    def evaluate(self, circuit: Circuit) -> float:
        """Faithfulness of one circuit."""
        return float(self.faithfulness(circuit.mask[None])[0])

    def curve(self, scores: torch.Tensor, n_points: int | None = 64) -> Curve:
        """Faithfulness of the top-k circuits of `scores` for k = 0 .. n_edges (every k when n_points is
        None or the graph is small, else about `n_points` k values, denser at small k)."""
        n = self.graph.n_edges
        if n_points is None or n <= n_points:
            ks = list(range(n + 1))
        else:
            geometric = torch.logspace(0, torch.log10(torch.tensor(float(n))), n_points).round().long().tolist()
            ks = sorted({0, n, *geometric})
        order = ranking(scores)
        masks = torch.zeros(len(ks), n, dtype=torch.bool)
        for i, k in enumerate(ks):
            masks[i, order[:k]] = True
        return Curve(ks, self.faithfulness(masks).tolist(), n)


def evaluate(
    model: HookedTransformer,
    circuit: Circuit,
    clean: torch.Tensor,
    corrupted: torch.Tensor | None,
    metric: Metric,
    ablation: str = "corrupted",
) -> float:
    """Faithfulness of `circuit`: every edge outside it ablated (0 = all ablated, 1 = the model)."""
    return Ablation(model, clean, corrupted, metric, ablation).evaluate(circuit)
