"""A discovered circuit as a graph: nodes by layer (input, heads, MLPs, logits), edges coloured by which
input they feed (query / key / value / MLP / logits) and as wide as their |score|."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import go, layout, to_numpy

INPUT_COLOURS = {"q": "#1f77b4", "k": "#ff7f0e", "v": "#2ca02c", "mlp": "#7f7f7f", "logits": "#d62728"}
_QKV_OFFSET = {"q": 0.22, "k": 0.0, "v": -0.22}


def _node_xy(graph: Any, node: str) -> tuple[float, float]:
    x = graph.node_layer(node)
    if ".kv" in node:  # a KV head (grouped-query attention): the middle of its group of query heads
        first = int(node.split(".kv")[1]) * graph.group
        return x, float(graph.n_heads - 1 - first - (graph.group - 1) / 2)
    if node.startswith("a"):
        return x, float(graph.n_heads - 1 - int(node.split(".h")[1]))
    return x, (graph.n_heads - 1) / 2


def circuit_graph(circuit: Any, title: str | None = None, max_edges: int = 300) -> Any:
    """Figure of `circuit` (a `circuitlab.analysis.discovery.Circuit`): its edges, widths by |score| (equal
    widths without scores); at most `max_edges` edges, the highest-scoring ones."""
    graph = circuit.graph
    ids = circuit.mask.nonzero().flatten().numpy()
    scores = np.abs(to_numpy(circuit.scores))[ids] if circuit.scores is not None else np.ones(len(ids))
    keep = np.argsort(-scores, kind="stable")[:max_edges]
    ids, scores = ids[keep], scores[keep]
    top = scores.max() if len(scores) and scores.max() > 0 else 1.0
    pairs = graph.edge_index.numpy()
    signed = to_numpy(circuit.scores) if circuit.scores is not None else np.ones(graph.n_edges)
    fig = go().Figure()
    used: set[str] = set()
    seen_kind: set[str] = set()
    for edge, score in zip(ids, scores, strict=True):
        s, r = pairs[edge]
        sender, receiver = graph.senders[s], graph.receivers[r]
        node = graph.receiver_node(r)
        kind = receiver[-2] if "<" in receiver else ("logits" if receiver == "logits" else "mlp")
        (x0, y0), (x1, y1) = _node_xy(graph, sender), _node_xy(graph, node)
        y1 += _QKV_OFFSET.get(kind, 0.0)
        fig.add_trace(
            go().Scatter(
                x=[x0, x1],
                y=[y0, y1],
                mode="lines",
                line=dict(width=0.5 + 7.5 * score / top, color=INPUT_COLOURS[kind]),
                opacity=0.75,
                name=kind,
                legendgroup=kind,
                showlegend=kind not in seen_kind,
                hovertext=f"{sender} -> {receiver}: {signed[edge]:.4g}",
                hoverinfo="text",
            )
        )
        seen_kind.add(kind)
        used.update((sender, node))
    nodes = [*graph.senders, "logits"]
    xy = np.array([_node_xy(graph, n) for n in nodes])
    fig.add_trace(
        go().Scatter(
            x=xy[:, 0],
            y=xy[:, 1],
            mode="markers+text",
            text=nodes,
            textposition="top center",
            marker=dict(size=14, color=["#333" if n in used else "#ddd" for n in nodes], line=dict(width=1)),
            hoverinfo="text",
            name="nodes",
            showlegend=False,
        )
    )
    ticks = [-1, *range(graph.n_layers), graph.n_layers]
    labels = ["input", *[f"layer {l}" for l in range(graph.n_layers)], "logits"]
    layout(
        fig,
        title or f"circuit: {len(circuit)} of {graph.n_edges} edges",
        height=180 + 60 * graph.n_heads,
        width=300 + 150 * graph.n_layers,
    )
    fig.update_xaxes(tickvals=ticks, ticktext=labels, zeroline=False)
    fig.update_yaxes(visible=False, range=[-0.6, graph.n_heads - 0.3])  # room for the node labels
    return fig
