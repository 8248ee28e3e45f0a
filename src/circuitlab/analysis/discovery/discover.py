"""One call from a problem to a circuit: score the edges with a method and keep the smallest faithful circuit."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .acdc import acdc
from .attribution import edge_attribution
from .circuit import Ablation, Circuit, Curve
from .problems import Problem
from .scoring import roc_auc

ALL_METHODS = ("eap", "eap-ig", "acdc")


@dataclass
class Discovery:
    method: str
    circuit: Circuit
    scores: torch.Tensor  # [n_edges]
    curve: Curve
    faithfulness: float
    seconds: float  # the method itself (scores or pruning), not the evaluation
    roc_auc: float | None  # against the problem's true edges, when it has them

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "faithfulness": self.faithfulness,
            "seconds": self.seconds,
            "roc_auc": self.roc_auc,
            "circuit": self.circuit.to_dict(),
            "curve": self.curve.to_dict(),
        }


def discover(
    problem: Problem,
    method: str = "eap-ig",
    level: float = 0.9,
    steps: int = 20,
    threshold: float = 0.01,
    experiment: Ablation | None = None,
) -> Discovery:
    """EAP / EAP-IG: the smallest top-|score| circuit reaching `level` faithfulness (all edges if none does);
    ACDC: its pruned graph at `threshold`, its tested effects as the ranking."""
    if method not in ALL_METHODS:
        raise ValueError(f"method={method!r} is invalid: expected one of {list(ALL_METHODS)}")
    exp = experiment or Ablation(problem.model, problem.clean, problem.corrupted, problem.metric)
    start = time.perf_counter()
    if method == "acdc":
        circuit = acdc(problem.model, problem.clean, problem.corrupted, problem.metric, threshold, experiment=exp)
        scores = circuit.scores
    else:
        scores = edge_attribution(problem.model, problem.clean, problem.corrupted, problem.metric, method, steps)
    seconds = time.perf_counter() - start
    curve = exp.curve(scores)
    if method != "acdc":
        k = curve.minimal(level)
        circuit = Circuit.top_k(exp.graph, scores, k if k is not None else exp.graph.n_edges)
    auc = roc_auc(scores, problem.truth) if problem.true_edges else None
    return Discovery(method, circuit, scores, curve, exp.evaluate(circuit), seconds, auc)
