"""The computational graph of a model for circuit discovery: senders, receivers and the edges between them.

Senders write into the residual stream: `input` (token + position embeddings), every attention head
(`a{layer}.h{head}`, its `hook_result`) and every MLP (`m{layer}`). Receivers read from it: each head's
query, key and value inputs separately (`a1.h0<q>`, `<k>`, `<v>`), every MLP input and the `logits`
(the final residual stream). An edge sender -> receiver exists when the sender sits upstream of the
receiver (earlier layer; in the same layer only head -> MLP, unless attention and MLP run in parallel).
A GPT-2-small-shaped model has 157 senders, 445 receivers and 32,491 edges, as in Hanna et al. 2024.

Grouped-query attention (n_key_value_heads < n_heads): a layer computes each key and value once per KV head
and its group of query heads shares them, so the key and value inputs are receivers per KV head
(`a1.kv0<k>`, `a1.kv0<v>`, read by heads h with h // group == 0), while queries stay per head. Ablating
an edge into `a1.kv0<k>` changes the keys of the whole group, as the architecture does; there is no
per-query-head key input to intervene on. A model ungrouped with `set_ungroup_grouped_query_attention(True)`
computes keys and values per query head from its own input copy, and gets per-head receivers as usual.

Edges are stored as a dense [sender, receiver] grid with a boolean `valid` mask; `edge_index` [n_edges, 2]
lists the valid cells in a fixed order (row-major), which is the order of every per-edge vector here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...model import HookedTransformer

QKV = ("q", "k", "v")


@dataclass(frozen=True)
class Graph:
    n_layers: int
    n_heads: int
    has_mlp: bool
    parallel_attn_mlp: bool = False
    n_kv_heads: int | None = None  # key/value inputs per layer (None: one per head)
    senders: list[str] = field(init=False)
    receivers: list[str] = field(init=False)

    def __post_init__(self) -> None:
        kv = self.n_kv_heads
        if kv is not None and not (0 < kv <= self.n_heads and self.n_heads % kv == 0):
            raise ValueError(f"n_kv_heads={kv} is invalid: expected a divisor of n_heads={self.n_heads}")
        senders = ["input"]
        receivers = []
        for layer in range(self.n_layers):
            senders += [f"a{layer}.h{h}" for h in range(self.n_heads)]
            receivers += [f"a{layer}.h{h}<q>" for h in range(self.n_heads)]
            receivers += [f"{self._kv_node(layer, j)}<{x}>" for x in "kv" for j in range(self.kv_heads)]
            if self.has_mlp:
                senders.append(f"m{layer}")
                receivers.append(f"m{layer}")
        receivers.append("logits")
        object.__setattr__(self, "senders", senders)
        object.__setattr__(self, "receivers", receivers)

    @classmethod
    def from_model(cls, model: HookedTransformer) -> Graph:
        cfg = model.cfg
        kv = model.blocks[0].attn.n_kv_inputs  # n_heads when ungrouped (keys per query head), else n_kv_heads
        return cls(cfg.n_layers, cfg.n_heads, not cfg.attn_only, bool(cfg.parallel_attn_mlp), kv)

    @property
    def kv_heads(self) -> int:
        """Key / value receivers per layer."""
        return self.n_kv_heads or self.n_heads

    @property
    def group(self) -> int:
        """Query heads sharing one key / value input."""
        return self.n_heads // self.kv_heads

    def _kv_node(self, layer: int, kv_head: int) -> str:
        return f"a{layer}.h{kv_head}" if self.group == 1 else f"a{layer}.kv{kv_head}"

    # ---- layout ----------------------------------------------------------------------------------
    @property
    def per_layer(self) -> int:
        """Senders per layer: the heads, then the MLP."""
        return self.n_heads + int(self.has_mlp)

    def head_sender(self, layer: int, head: int) -> int:
        return 1 + layer * self.per_layer + head

    def mlp_sender(self, layer: int) -> int:
        return 1 + layer * self.per_layer + self.n_heads

    @property
    def n_attn_receivers(self) -> int:
        """Receivers per layer's attention: a query per head, a key and a value per KV head."""
        return self.n_heads + 2 * self.kv_heads

    def qkv_receivers(self, layer: int) -> slice:
        """Receiver indices of layer `layer`'s q, k and v inputs ([n_heads + 2 * kv_heads], q first)."""
        start = layer * (self.n_attn_receivers + int(self.has_mlp))
        return slice(start, start + self.n_attn_receivers)

    def head_receiver(self, layer: int, head: int, which: str) -> int:
        """The receiver of `which` ("q", "k" or "v") input that query head `head` reads (for k / v the
        input of its KV head, shared by its group)."""
        if which not in QKV:
            raise ValueError(f"which={which!r} is invalid: expected one of {list(QKV)}")
        start = self.qkv_receivers(layer).start
        if which == "q":
            return start + head
        return start + self.n_heads + (which == "v") * self.kv_heads + head // self.group

    def mlp_receiver(self, layer: int) -> int:
        return self.qkv_receivers(layer).stop

    @property
    def logits_receiver(self) -> int:
        return len(self.receivers) - 1

    def n_upstream_attn(self, layer: int) -> int:
        """Senders that a head of `layer` reads: the input and everything of earlier layers."""
        return 1 + layer * self.per_layer

    def n_upstream_mlp(self, layer: int) -> int:
        return self.n_upstream_attn(layer) + (0 if self.parallel_attn_mlp else self.n_heads)

    @property
    def n_upstream(self) -> torch.Tensor:
        """[receiver]: how many senders (a prefix of `senders`) feed each receiver."""
        counts = []
        for layer in range(self.n_layers):
            counts += [self.n_upstream_attn(layer)] * self.n_attn_receivers
            if self.has_mlp:
                counts.append(self.n_upstream_mlp(layer))
        counts.append(len(self.senders))
        return torch.tensor(counts)

    @property
    def valid(self) -> torch.Tensor:
        """[sender, receiver] bool: True where the edge exists."""
        return torch.arange(len(self.senders))[:, None] < self.n_upstream[None, :]

    @property
    def edge_index(self) -> torch.Tensor:
        """[n_edges, 2] (sender, receiver) of every edge, row-major over the grid."""
        return self.valid.nonzero()

    @property
    def n_edges(self) -> int:
        return int(self.valid.sum())

    @property
    def edge_names(self) -> list[str]:
        return [f"{self.senders[s]}->{self.receivers[r]}" for s, r in self.edge_index.tolist()]

    def edge_id(self, name: str) -> int:
        """Position of edge `"sender->receiver"` in the per-edge order."""
        names = self.edge_names
        if name not in names:
            import difflib

            close = difflib.get_close_matches(name, names, n=3)
            raise ValueError(f"no edge {name!r} in this graph; close: {close} (form: 'a0.h1->a1.h0<k>')")
        return names.index(name)

    def to_grid(self, values: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """Per-edge values [..., n_edges] -> [..., sender, receiver] (`fill` where there is no edge)."""
        grid = torch.full((*values.shape[:-1], *self.valid.shape), fill, dtype=values.dtype, device=values.device)
        grid[..., self.valid.to(values.device)] = values
        return grid

    def from_grid(self, grid: torch.Tensor) -> torch.Tensor:
        """[..., sender, receiver] -> per-edge [..., n_edges]."""
        return grid[..., self.valid.to(grid.device)]

    def receiver_node(self, receiver: int) -> str:
        """The node a receiver belongs to: `a1.h0<k>` -> `a1.h0`, `a1.kv0<k>` -> `a1.kv0` (a KV head), `m0`."""
        return self.receivers[receiver].split("<")[0]

    def receiver_senders(self, receiver: int) -> list[int]:
        """The senders whose output the receiver's input feeds: its head (the query heads of a KV head's
        group), its MLP; none for the logits."""
        node = self.receiver_node(receiver)
        if node == "logits":
            return []
        if ".kv" in node:
            layer, j = (int(x) for x in node[1:].split(".kv"))
            return [self.head_sender(layer, h) for h in range(j * self.group, (j + 1) * self.group)]
        return [self.senders.index(node)]

    def node_layer(self, node: str) -> float:
        """Column for drawing: input -1, heads of layer l at l, MLP l at l + 0.5, logits n_layers."""
        if node == "input":
            return -1.0
        if node == "logits":
            return float(self.n_layers)
        if node.startswith("m"):
            return int(node[1:]) + 0.5
        return float(int(node[1:].split(".")[0]))
