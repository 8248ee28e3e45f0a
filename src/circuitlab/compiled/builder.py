"""Build transformers by intent: weights set by hand so that the circuit is known by construction.

The residual stream is cut into named orthogonal subspaces (one-hot blocks of basis directions):
`tok` (the token, one-hot over the vocabulary), `pos` (the position, one-hot over n_ctx), `one` (a constant
1 on every token) plus any the caller declares. A head is set by two intents: where it attends (a QK rule:
`previous`, `position`, `same`) and what it moves (an OV rule: copy one subspace into another). An MLP can
copy one subspace into another through ReLUs. The unembedding reads one subspace. No LayerNorm, so every
weight means exactly what it says.
"""

from __future__ import annotations

import torch

from ..model import HookedTransformer, HookedTransformerConfig


class Builder:
    """`Builder(d_vocab, n_ctx, n_layers, n_heads, spaces={"prev": d_vocab}, d_head=...)` -> set heads -> `.build()`."""

    def __init__(
        self,
        d_vocab: int,
        n_ctx: int,
        n_layers: int,
        n_heads: int,
        spaces: dict[str, int],
        d_head: int,
        mlp: bool = False,
        d_mlp: int | None = None,
        flags: dict[str, int] | None = None,
    ) -> None:
        self.sizes = {"tok": d_vocab, "pos": n_ctx, "one": 1, **(flags or {}), **spaces}
        self.offsets, start = {}, 0
        for name, size in self.sizes.items():
            self.offsets[name] = start
            start += size
        self.flags = dict(flags or {})
        cfg = HookedTransformerConfig(
            n_layers=n_layers,
            d_model=start,
            n_heads=n_heads,
            d_head=d_head,
            d_mlp=d_mlp or (start if mlp else None),
            n_ctx=n_ctx,
            d_vocab=d_vocab,
            attn_only=not mlp,
            normalization_type=None,
            attn_scale=1.0,
            act_fn="relu",
            dtype="float64",
            init_weights=False,
        )
        self.model = HookedTransformer(cfg)
        with torch.no_grad():
            for p in self.model.parameters():
                p.zero_()
            W_E, W_pos = self.model.embed.W_E, self.model.pos_embed.W_pos
            W_E[:, self.span("tok")] = torch.eye(d_vocab, dtype=W_E.dtype)
            W_E[:, self.span("one")] = 1.0
            W_pos[:, self.span("pos")] = torch.eye(n_ctx, dtype=W_pos.dtype)

    def span(self, name: str) -> slice:
        if name not in self.sizes:
            raise ValueError(f"unknown subspace {name!r}: declared {list(self.sizes)}")
        return slice(self.offsets[name], self.offsets[name] + self.sizes[name])

    def dims(self, name: str) -> torch.Tensor:
        return torch.arange(self.offsets[name], self.offsets[name] + self.sizes[name])

    def set_flag(self, name: str, tokens: list[int], value: float = 1.0) -> None:
        """A 1-dimensional token feature (declared in `flags`): `value` on `tokens`."""
        with torch.no_grad():
            self.model.embed.W_E[tokens, self.offsets[name]] = value

    def _attn(self, layer: int, head: int):
        return self.model.blocks[layer].attn

    # ---- where a head attends (QK) ---------------------------------------------------------------
    def attend_previous(self, layer: int, head: int, strength: float) -> None:
        """Query q attends to key q - 1 (score `strength`, 0 elsewhere)."""
        n = self.sizes["pos"]
        a = self._attn(layer, head)
        with torch.no_grad():
            a.W_Q[head, self.dims("pos"), torch.arange(n)] = strength  # query pos q -> e_q
            a.W_K[head, self.dims("pos")[:-1], torch.arange(1, n)] = 1.0  # key pos k -> e_{k+1}

    def attend_position(self, layer: int, head: int, position: int, strength: float, slot: int = 0) -> None:
        """Every query attends to key position `position`."""
        a = self._attn(layer, head)
        with torch.no_grad():
            a.W_Q[head, self.offsets["one"], slot] = strength
            a.W_K[head, self.offsets["pos"] + position, slot] = 1.0

    def attend_same(
        self, layer: int, head: int, query: str, key: str, strength: float, exclude_self: bool = False, slot: int = 0
    ) -> None:
        """Score `strength` where the query's `query` subspace equals the key's `key` subspace (one-hot
        blocks of one size), using d_head slots slot .. slot + size; `exclude_self` subtracts it at k = q."""
        size = self.sizes[query]
        if self.sizes[key] != size:
            raise ValueError(f"subspaces {query!r} and {key!r} differ in size ({size} vs {self.sizes[key]})")
        a = self._attn(layer, head)
        slots = torch.arange(slot, slot + size)
        with torch.no_grad():
            a.W_Q[head, self.dims(query), slots] += strength
            a.W_K[head, self.dims(key), slots] += 1.0
            if exclude_self:
                n = self.sizes["pos"]
                pos_slots = torch.arange(slot + size, slot + size + n)
                a.W_Q[head, self.dims("pos"), pos_slots] -= strength
                a.W_K[head, self.dims("pos"), pos_slots] += 1.0

    def sink(self, layer: int, head: int, strength: float, slot: int) -> None:
        """Add score `strength` on key position 0 (an attention sink for queries with no match)."""
        self.attend_position(layer, head, 0, strength, slot)

    # ---- what a head moves (OV) ------------------------------------------------------------------
    def copy(self, layer: int, head: int, src: str, dst: str, scale: float = 1.0) -> None:
        """OV: write the attended position's `src` subspace into `dst` (same size), times `scale`."""
        size = self.sizes[src]
        if self.sizes[dst] != size:
            raise ValueError(f"cannot copy {src!r} ({size}) into {dst!r} ({self.sizes[dst]})")
        a = self._attn(layer, head)
        e = torch.arange(size)
        with torch.no_grad():
            a.W_V[head, self.dims(src), e] = 1.0
            a.W_O[head, e, self.dims(dst)] = scale

    def mlp_copy(self, layer: int, src: str, dst: str) -> None:
        """MLP: relu(x_src) into dst, one neuron per dimension (exact on non-negative inputs)."""
        size = self.sizes[src]
        mlp = self.model.blocks[layer].mlp
        n = torch.arange(size)
        with torch.no_grad():
            mlp.W_in[self.dims(src), n] = 1.0
            mlp.W_out[n, self.dims(dst)] = 1.0

    def neuron(
        self, layer: int, index: int, read: dict[str, float], write: dict[str, float], bias: float = 0.0
    ) -> None:
        """MLP neuron `index`: relu(sum w * x_space + bias) over 1-dimensional spaces, written with weights."""
        mlp = self.model.blocks[layer].mlp
        with torch.no_grad():
            for space, w in read.items():
                mlp.W_in[self.offsets[space], index] = w
            mlp.b_in[index] = bias
            for space, w in write.items():
                mlp.W_out[index, self.offsets[space]] = w

    def read_out(self, space: str, scale: float = 1.0, tokens: list[int] | None = None) -> None:
        """Unembed: logit of token i reads dimension i of `space` (or `space`'s one dimension for each of
        `tokens`)."""
        with torch.no_grad():
            W_U = self.model.unembed.W_U
            if tokens is None:
                W_U[self.dims(space), torch.arange(self.sizes[space])] = scale
            else:
                W_U[self.offsets[space], tokens] = scale

    def build(self) -> HookedTransformer:
        return self.model
