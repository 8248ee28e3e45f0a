"""Automatic circuit discovery: the edge graph, exact edge ablation, EAP / EAP-IG attribution, ACDC, and
faithfulness of circuits (see `graph`, `interventions`, `attribution`, `acdc`, `circuit`)."""

from .acdc import acdc
from .attribution import METHODS, ablated_activations, edge_attribution
from .circuit import Ablation, Circuit, Curve, evaluate, ranking
from .discover import ALL_METHODS, Discovery, discover
from .graph import Graph
from .interventions import graph_hooks_enabled, receiver_gradients, run_with_edges, sender_activations
from .scoring import roc_auc

__all__ = [
    "ALL_METHODS",
    "METHODS",
    "Ablation",
    "Circuit",
    "Curve",
    "Discovery",
    "Graph",
    "ablated_activations",
    "acdc",
    "discover",
    "edge_attribution",
    "evaluate",
    "graph_hooks_enabled",
    "ranking",
    "receiver_gradients",
    "roc_auc",
    "run_with_edges",
    "sender_activations",
]
