"""`ActivationCache`: the activations of one run, by hook name, with the residual-stream algebra on top.

Indexing follows TransformerLens: `cache["blocks.0.attn.hook_pattern"]`, `cache["pattern", 0]`,
`cache["resid_pre", -1]`, `cache["scale", 2, "ln1"]`. The decomposition methods return stacks
[component, batch, pos, d_model] that sum to the residual stream they decompose. Every `pos_slice` /
`batch_slice` / `neuron_slice` takes what TransformerLens's `Slice` takes (int, tuple, slice, list,
tensor, `Slice`). One deliberate difference: with `incl_remainder` and layer 0 the remainder is the
stream entering layer 0 (TransformerLens 2.18 takes the last layer's output there, a bug).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from .errors import ShapeError
from .hook_points import unknown_name_error
from .names import get_act_name
from .slice import Slice, SliceInput

if TYPE_CHECKING:
    from .transformer import HookedTransformer

PosSlice = Slice | SliceInput  # an int (the dim goes), a tuple (slice(*tuple)), a slice, indices, or None


def apply_pos_slice(tensor: torch.Tensor, pos_slice: PosSlice, dim: int = -2) -> torch.Tensor:
    """Index `dim` like TransformerLens's `Slice`: an int drops the dim, a tuple is `slice(*tuple)`."""
    return Slice(pos_slice).apply(tensor, dim)


def accumulated_bias(
    model: HookedTransformer, layer: int, mlp_input: bool = False, include_mlp_biases: bool = True
) -> torch.Tensor:
    """The output biases (b_O, b_out) written into the residual stream before `layer`: [d_model].

    layer in [0, n_layers]; `mlp_input` adds layer `layer`'s b_O (the stream the MLP reads);
    `include_mlp_biases=False` leaves out b_out (when the MLP outputs are kept whole elsewhere).
    """
    n_layers = model.cfg.n_layers
    if not 0 <= layer <= n_layers:
        raise ShapeError(f"layer={layer} is outside [0, n_layers={n_layers}]")
    if mlp_input and layer == n_layers:
        raise ShapeError("mlp_input=True needs layer < n_layers: there is no attention bias beyond the final layer")
    bias = torch.zeros(model.cfg.d_model, dtype=model.cfg.dtype, device=model.device)
    for block in model.blocks[: layer + 1 if mlp_input else layer]:
        bias = bias + block.attn.b_O
    if include_mlp_biases and not model.cfg.attn_only:
        for block in model.blocks[:layer]:
            bias = bias + block.mlp.b_out
    return bias


class ActivationCache:
    def __init__(self, cache_dict: dict[str, torch.Tensor], model: HookedTransformer, has_batch_dim: bool = True):
        self.cache_dict = cache_dict
        self.model = model
        self.has_batch_dim = has_batch_dim

    @property
    def has_embed(self) -> bool:
        return "hook_embed" in self.cache_dict

    @property
    def has_pos_embed(self) -> bool:
        return "hook_pos_embed" in self.cache_dict

    # ---- mapping ---------------------------------------------------------------------------------
    def _full_name(self, key: str | tuple) -> str:
        if isinstance(key, str):
            return key if key in self.cache_dict else get_act_name(key)
        if not isinstance(key, tuple) or not key:
            raise TypeError(f"cache key must be a hook name or a tuple like ('pattern', 0), got {key!r}")
        name, layer, *rest = (*key, None) if len(key) == 1 else key
        if isinstance(layer, int) and layer < 0:
            layer += self.model.cfg.n_layers
        return get_act_name(name, layer, *rest)

    def __getitem__(self, key: str | tuple) -> torch.Tensor:
        name = self._full_name(key)
        if name not in self.cache_dict:
            raise unknown_name_error(name, self.cache_dict, what="cached activation")
        return self.cache_dict[name]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str | tuple) and self._full_name(key) in self.cache_dict

    def keys(self) -> Any:
        return self.cache_dict.keys()

    def values(self) -> Any:
        return self.cache_dict.values()

    def items(self) -> Any:
        return self.cache_dict.items()

    def __iter__(self) -> Iterator[str]:
        return iter(self.cache_dict)

    def __len__(self) -> int:
        return len(self.cache_dict)

    # ---- housekeeping ----------------------------------------------------------------------------
    def to(self, device: str | torch.device, move_model: bool = False) -> ActivationCache:
        """Move every activation (and with `move_model` the model) to `device`, in place; returns self."""
        self.cache_dict = {k: v.to(device) for k, v in self.cache_dict.items()}
        if move_model:
            self.model.to(device)
        return self

    def remove_batch_dim(self) -> ActivationCache:
        """Drop the batch dimension of a batch-of-one cache, in place; returns self.

        A larger batch raises `ShapeError` (a ValueError and, as in TransformerLens, an AssertionError).
        """
        if not self.has_batch_dim:
            logging.warning("Tried removing batch dimension after already having removed it.")
            return self
        sizes = {k: v.shape[0] for k, v in self.cache_dict.items() if v.shape[0] != 1}
        if sizes:
            raise ShapeError(f"remove_batch_dim needs batch size 1, but e.g. {next(iter(sizes.items()))} (name, batch)")
        self.cache_dict = {k: v[0] for k, v in self.cache_dict.items()}
        self.has_batch_dim = False
        return self

    def apply_slice_to_batch_dim(self, batch_slice: PosSlice) -> ActivationCache:
        """A new cache of the selected batch rows (an int drops the batch dimension)."""
        batch_slice = Slice(batch_slice)
        if not self.has_batch_dim and batch_slice.mode != "identity":
            raise ShapeError("cannot index the batch of a cache without a batch dimension")
        cache = {name: batch_slice.apply(act, dim=0) for name, act in self.cache_dict.items()}
        return ActivationCache(cache, self.model, has_batch_dim=self.has_batch_dim and batch_slice.mode != "int")

    def toggle_autodiff(self, mode: bool = False) -> None:
        """Turn PyTorch's autograd on or off globally (`torch.set_grad_enabled`), as TransformerLens does."""
        logging.warning("Changed the global state, set autodiff to %s", mode)
        torch.set_grad_enabled(mode)

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.cache_dict.values())

    def memory_summary(self, top: int = 10) -> str:
        """Total memory and the largest activations, for deciding what to cache."""
        sizes = sorted(((t.numel() * t.element_size(), k) for k, t in self.cache_dict.items()), reverse=True)
        lines = [f"{len(self)} activations, {_fmt_bytes(self.memory_bytes())} in total"]
        lines += [
            f"  {_fmt_bytes(size):>10}  {name} {tuple(self.cache_dict[name].shape)}" for size, name in sizes[:top]
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} activations, {_fmt_bytes(self.memory_bytes())})"

    # ---- stacks over layers ----------------------------------------------------------------------
    def _layer(self, layer: int | None) -> int:
        n = self.model.cfg.n_layers
        return n if layer is None or layer == -1 else (layer + n if layer < 0 else layer)

    def stack_activation(self, activation_name: str, layer: int = -1, sublayer_type: str | None = None) -> torch.Tensor:
        """The activation from each layer below `layer` (all by default): [layer, ...]."""
        return torch.stack([self[activation_name, l, sublayer_type] for l in range(self._layer(layer))], dim=0)

    def accumulated_resid(
        self,
        layer: int | None = None,
        incl_mid: bool = False,
        apply_ln: bool = False,
        pos_slice: PosSlice = None,
        mlp_input: bool = False,
        return_labels: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[str]]:
        """The residual stream as it stands before each layer up to `layer` ("final_post" after the last).

        Returns [component, batch, pos, d_model]. `mlp_input` ends at `resid_mid[layer]`. With `apply_ln`,
        as in TransformerLens 2.18: up to the final layer each stream goes through the final norm
        recomputed on itself (the logit lens, `recompute_ln`); an earlier `layer` divides by that layer's
        cached norm scale.
        """
        layer = self._layer(layer)
        parts, labels = [], []
        for l in range(layer + 1):
            if l == self.model.cfg.n_layers:
                parts.append(self["resid_post", l - 1])
                labels.append("final_post")
                continue
            parts.append(self["resid_pre", l])
            labels.append(f"{l}_pre")
            if (incl_mid and l < layer) or (mlp_input and l == layer):
                parts.append(self["resid_mid", l])
                labels.append(f"{l}_mid")
        stack = torch.stack([apply_pos_slice(p, pos_slice) for p in parts], dim=0)
        if apply_ln:
            stack = self.apply_ln_to_stack(
                stack,
                layer,
                pos_slice=pos_slice,
                mlp_input=mlp_input,
                recompute_ln=layer == self.model.cfg.n_layers,
            )
        return (stack, labels) if return_labels else stack

    def decompose_resid(
        self,
        layer: int | None = None,
        mlp_input: bool = False,
        mode: str = "all",
        apply_ln: bool = False,
        pos_slice: PosSlice = None,
        incl_embeds: bool = True,
        return_labels: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[str]]:
        """The residual stream entering `layer` split into what wrote it: embeddings and each sublayer.

        mode "all", "attn" or "mlp" keeps those sublayers. Sums to `resid_pre[layer]` (or
        `resid_mid[layer]` with `mlp_input`) when everything is included.
        """
        if mode not in ("all", "attn", "mlp"):
            raise ValueError(f"mode={mode!r} is invalid: expected 'all', 'attn' or 'mlp'")
        layer = self._layer(layer)
        parts, labels = [], []
        if incl_embeds:
            for name in ("hook_embed", "hook_pos_embed"):
                if name in self.cache_dict:
                    parts.append(self.cache_dict[name])
                    labels.append(name.removeprefix("hook_"))
        for l in range(layer):
            if mode != "mlp":
                parts.append(self["attn_out", l])
                labels.append(f"{l}_attn_out")
            if mode != "attn" and not self.model.cfg.attn_only:
                parts.append(self["mlp_out", l])
                labels.append(f"{l}_mlp_out")
        if mlp_input and mode != "mlp" and layer < self.model.cfg.n_layers:
            parts.append(self["attn_out", layer])
            labels.append(f"{layer}_attn_out")
        stack = torch.stack([apply_pos_slice(p, pos_slice) for p in parts], dim=0)
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, pos_slice=pos_slice, mlp_input=mlp_input)
        return (stack, labels) if return_labels else stack

    def compute_head_results(self) -> None:
        """Per-head outputs z @ W_O (no b_O) from cached `hook_z`, stored as `attn.hook_result`."""
        for l, block in enumerate(self.model.blocks):
            name = f"blocks.{l}.attn.hook_result"
            if name not in self.cache_dict:
                z = self["z", l]  # [batch, pos, head, d_head]
                self.cache_dict[name] = torch.einsum("...phe,hed->...phd", z, block.attn.W_O.detach())

    def stack_head_results(
        self,
        layer: int = -1,
        return_labels: bool = False,
        incl_remainder: bool = False,
        pos_slice: PosSlice = None,
        apply_ln: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[str]]:
        """Each head's output in layers below `layer`: [layer * head, batch, pos, d_model], labels "L{l}H{h}".

        With `incl_remainder`, the rest of the residual stream (embeddings, biases, MLPs) is appended
        as "remainder", so the stack sums to the residual stream.
        """
        layer = self._layer(layer)
        if layer > 0 and "blocks.0.attn.hook_result" not in self.cache_dict:
            self.compute_head_results()
        n_heads = self.model.cfg.n_heads
        pos_slice = Slice(pos_slice)
        parts = [pos_slice.apply(self["result", l], dim=-3) for l in range(layer)]  # [..., head, d_model]
        labels = [f"L{l}H{h}" for l in range(layer) for h in range(n_heads)]
        stack = torch.cat(parts, dim=-2).movedim(-2, 0) if parts else self._empty_stack(pos_slice)  # [L*H, ..., d]
        return self._finish_stack(stack, labels, layer, pos_slice, incl_remainder, apply_ln, return_labels)

    # ---- neurons ---------------------------------------------------------------------------------
    def get_neuron_results(self, layer: int, neuron_slice: PosSlice = None, pos_slice: PosSlice = None) -> torch.Tensor:
        """Each neuron's output post * W_out (no b_out) in `layer`: [batch, pos, neuron, d_model]."""
        neuron_slice, pos_slice = Slice(neuron_slice), Slice(pos_slice)
        acts = pos_slice.apply(self["post", layer, "mlp"], dim=-2)  # [batch, pos, d_mlp] (pos first: may drop)
        acts = neuron_slice.apply(acts, dim=-1)
        W_out = neuron_slice.apply(self.model.blocks[layer].mlp.W_out, dim=0)  # [neuron, d_model]
        return acts[..., None] * W_out

    def stack_neuron_results(
        self,
        layer: int,
        pos_slice: PosSlice = None,
        neuron_slice: PosSlice = None,
        return_labels: bool = False,
        incl_remainder: bool = False,
        apply_ln: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[str]]:
        """Every neuron's output in layers below `layer`: [layer * neuron, batch, pos, d_model], labels
        "L{l}N{n}"; with `incl_remainder`, the rest of `resid_post[layer - 1]` as "remainder"."""
        layer = self._layer(layer)
        neuron_slice, pos_slice = Slice(neuron_slice), Slice(pos_slice)
        if neuron_slice.mode == "int":  # one neuron per layer: keep the neuron dim to stack along
            neuron_slice = Slice([neuron_slice.slice])
        neurons = [int(n) for n in neuron_slice.indices(self.model.cfg.d_mlp)]
        parts = [self.get_neuron_results(l, neuron_slice, pos_slice) for l in range(layer)]
        labels = [f"L{l}N{n}" for l in range(layer) for n in neurons]
        stack = torch.cat(parts, dim=-2).movedim(-2, 0) if parts else self._empty_stack(pos_slice)  # [L*N, ..., d]
        return self._finish_stack(stack, labels, layer, pos_slice, incl_remainder, apply_ln, return_labels)

    def _empty_stack(self, pos_slice: Slice) -> torch.Tensor:
        embed = pos_slice.apply(self["hook_embed"], dim=-2)
        return torch.zeros(0, *embed.shape, dtype=embed.dtype, device=embed.device)

    def _finish_stack(
        self,
        stack: torch.Tensor,
        labels: list[str],
        layer: int,
        pos_slice: Slice,
        incl_remainder: bool,
        apply_ln: bool,
        return_labels: bool,
    ) -> torch.Tensor | tuple[torch.Tensor, list[str]]:
        """Append the remainder of the residual stream entering `layer`, apply the norm, add labels."""
        if incl_remainder:
            resid = self["resid_post", layer - 1] if layer > 0 else self["resid_pre", 0]
            remainder = pos_slice.apply(resid, dim=-2) - stack.sum(0)
            stack = torch.cat([stack, remainder[None]], dim=0)
            labels = [*labels, "remainder"]
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, pos_slice=pos_slice)
        return (stack, labels) if return_labels else stack

    def get_full_resid_decomposition(
        self,
        layer: int | None = None,
        mlp_input: bool = False,
        expand_neurons: bool = True,
        apply_ln: bool = False,
        pos_slice: PosSlice = None,
        return_labels: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[str]]:
        """The residual stream entering `layer` as every head, every neuron (or each MLP's output, without
        `expand_neurons`), the embeddings and one summed "bias" term: [component, batch, pos, d_model].

        Sums to `resid_pre[layer]` (`resid_mid[layer]` with `mlp_input`; the final `resid_post` by default).
        """
        layer = self._layer(layer)
        pos_slice = Slice(pos_slice)
        heads, labels = self.stack_head_results(layer + int(mlp_input), pos_slice=pos_slice, return_labels=True)
        parts = [heads]
        if not self.model.cfg.attn_only and layer > 0:
            if expand_neurons:
                mlp, mlp_labels = self.stack_neuron_results(layer, pos_slice=pos_slice, return_labels=True)
            else:
                mlp, mlp_labels = self.decompose_resid(
                    layer, pos_slice=pos_slice, incl_embeds=False, mode="mlp", return_labels=True
                )
            parts.append(mlp)
            labels = [*labels, *mlp_labels]
        for name in ("hook_embed", "hook_pos_embed"):
            if name in self.cache_dict:
                parts.append(pos_slice.apply(self.cache_dict[name], dim=-2)[None])
                labels.append(name.removeprefix("hook_"))
        bias = accumulated_bias(self.model, layer, mlp_input, include_mlp_biases=expand_neurons).detach()
        parts.append(bias.to(heads.dtype).expand((1, *heads.shape[1:])))
        labels.append("bias")
        stack = torch.cat(parts, dim=0)
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, pos_slice=pos_slice, mlp_input=mlp_input)
        return (stack, labels) if return_labels else stack

    # ---- layer norm and logits -------------------------------------------------------------------
    def apply_ln_to_stack(
        self,
        residual_stack: torch.Tensor,
        layer: int | None = None,
        mlp_input: bool = False,
        pos_slice: PosSlice = None,
        batch_slice: PosSlice = None,
        has_batch_dim: bool = True,
        recompute_ln: bool = False,
    ) -> torch.Tensor:
        """Put each component through the norm that reads the stream at `layer`, using the scale
        cached from the real run, so the components still add up (linear, not recomputed per component).

        Centres for LN/LNPre and divides by the cached scale; the norm's weight and bias are not
        applied (fold them into the next layer first, as with processed pretrained weights).
        With `recompute_ln` and `layer` the final one (TransformerLens 2.18's logit lens), each
        component instead goes through `ln_final` itself (its own statistics, weight and bias).
        """
        norm = self.model.cfg.normalization_type
        if norm is None:
            return residual_stack
        layer = self._layer(layer)
        if has_batch_dim and batch_slice is not None:
            residual_stack = apply_pos_slice(residual_stack, batch_slice, dim=1)
        if recompute_ln and layer == self.model.cfg.n_layers:
            return self.model.ln_final(residual_stack)
        if layer == self.model.cfg.n_layers:
            scale = self["ln_final.hook_scale"]
        else:
            scale = self[f"blocks.{layer}.ln{2 if mlp_input else 1}.hook_scale"]
        if norm in ("LN", "LNPre"):
            residual_stack = residual_stack - residual_stack.mean(-1, keepdim=True)
        scale = apply_pos_slice(scale, pos_slice)
        if self.has_batch_dim and batch_slice is not None:
            scale = apply_pos_slice(scale, batch_slice, dim=0)
        return residual_stack / scale

    def logit_attrs(
        self,
        residual_stack: torch.Tensor,
        tokens: int | torch.Tensor,
        incorrect_tokens: int | torch.Tensor | None = None,
        pos_slice: PosSlice = None,
        batch_slice: PosSlice = None,
        has_batch_dim: bool = True,
    ) -> torch.Tensor:
        """Each component's direct contribution to logit[tokens] (minus logit[incorrect_tokens]).

        Applies the final LayerNorm scale itself (as TransformerLens does), then projects on the
        unembedding directions: returns [component, ...] for a stack [component, ..., d_model].
        """
        directions = self.model.tokens_to_residual_directions(tokens)
        if incorrect_tokens is not None:
            wrong = self.model.tokens_to_residual_directions(incorrect_tokens)
            if wrong.shape != directions.shape:
                raise ValueError(
                    f"incorrect_tokens must match tokens in shape: {tuple(wrong.shape)} vs {tuple(directions.shape)}"
                )
            directions = directions - wrong
        scaled = self.apply_ln_to_stack(
            residual_stack, None, pos_slice=pos_slice, batch_slice=batch_slice, has_batch_dim=has_batch_dim
        )
        return (scaled * directions).sum(-1)


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
