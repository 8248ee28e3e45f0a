"""Knocking parts out: heads, neurons or whole sublayers, by zero, mean or resample ablation.

Mean ablation replaces an activation by its mean over a reference batch (over batch and positions,
or per position with `per_position=True`, for aligned prompts such as IOI templates); resample
ablation by the activation of another, randomly chosen reference sequence. Hooks are temporary:
nothing stays attached after the call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..model import HookedTransformer

METHODS = ("zero", "mean", "resample")


def _reference_value(
    ref: torch.Tensor | None, method: str, per_position: bool, batch: int, n_pos: int, gen: torch.Generator
) -> torch.Tensor | float:
    """What replaces an activation [batch, pos, ...] under `method`, broadcastable to its shape."""
    if method == "zero":
        return 0.0
    if method == "mean":
        return ref.mean(0, keepdim=True) if per_position else ref.mean((0, 1), keepdim=True)
    rows = torch.randint(0, ref.shape[0], (batch,), generator=gen)
    return ref[rows, :n_pos]


def ablation_hooks(
    model: HookedTransformer,
    heads: Sequence[tuple[int, int]] = (),
    neurons: Sequence[tuple[int, int]] = (),
    layers: Sequence[tuple[int, str]] = (),
    method: str = "mean",
    reference: torch.Tensor | None = None,
    per_position: bool = False,
    batch: int | None = None,
    n_pos: int | None = None,
    seed: int = 0,
) -> list[tuple[str, Any]]:
    """Forward hooks ablating the given heads (layer, head), MLP neurons (layer, neuron) and
    sublayers (layer, "attn" | "mlp"). `reference` tokens are needed for mean and resample."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is invalid: expected one of {list(METHODS)}")
    if method != "zero" and reference is None:
        raise ValueError(f"{method} ablation needs reference tokens to take activations from")
    targets: dict[str, list[int] | None] = {}
    for layer, head in heads:
        _check_index(model, layer, head, model.cfg.n_heads, "head")
        targets.setdefault(f"blocks.{layer}.attn.hook_z", []).append(head)
    for layer, neuron in neurons:
        if model.cfg.attn_only:
            raise ValueError("neuron ablation needs MLPs: this model is attention-only")
        _check_index(model, layer, neuron, model.cfg.d_mlp, "neuron")
        targets.setdefault(f"blocks.{layer}.mlp.hook_post", []).append(neuron)
    for layer, part in layers:
        if part not in ("attn", "mlp") or (part == "mlp" and model.cfg.attn_only):
            raise ValueError(f"sublayer {part!r} is invalid: expected 'attn'{' or mlp' * (not model.cfg.attn_only)}")
        _check_index(model, layer, 0, 1, "layer")
        targets[f"blocks.{layer}.hook_{part}_out"] = None  # the whole output
    refs: dict[str, torch.Tensor] = {}
    if method != "zero":
        _, cache = model.run_with_cache(reference, names_filter=list(targets))
        refs = dict(cache.items())
    gen = torch.Generator().manual_seed(seed)

    def make_hook(name: str, index: list[int] | None) -> Any:
        def hook(act: torch.Tensor, hook: Any) -> torch.Tensor:
            value = _reference_value(refs.get(name), method, per_position, act.shape[0], act.shape[1], gen)
            if isinstance(value, torch.Tensor) and per_position and method == "mean":
                value = value[:, : act.shape[1]]
            if index is None:
                return torch.zeros_like(act) + value
            act = act.clone()
            if isinstance(value, torch.Tensor):
                value = value.expand(act.shape[0], act.shape[1], *value.shape[2:])[:, :, index]
            act[:, :, index] = value
            return act

        return hook

    return [(name, make_hook(name, index)) for name, index in targets.items()]


def _check_index(model: HookedTransformer, layer: int, index: int, size: int, what: str) -> None:
    if not 0 <= layer < model.cfg.n_layers:
        raise ValueError(f"layer {layer} is out of range: the model has {model.cfg.n_layers} layers")
    if not 0 <= index < size:
        raise ValueError(f"{what} {index} is out of range: layer {layer} has {size}")


def run_with_ablation(
    model: HookedTransformer,
    tokens: torch.Tensor,
    heads: Sequence[tuple[int, int]] = (),
    neurons: Sequence[tuple[int, int]] = (),
    layers: Sequence[tuple[int, str]] = (),
    method: str = "mean",
    reference: torch.Tensor | None = None,
    per_position: bool = False,
    seed: int = 0,
    **forward_kwargs: Any,
) -> Any:
    """The model's output on `tokens` with the given parts ablated (see `ablation_hooks`)."""
    hooks = ablation_hooks(model, heads, neurons, layers, method, reference, per_position, seed=seed)
    return model.run_with_hooks(tokens, fwd_hooks=hooks, **forward_kwargs)


@torch.no_grad()
def head_ablation_effects(
    model: HookedTransformer,
    tokens: torch.Tensor,
    loss_fn: Any,
    reference: torch.Tensor | None = None,
    method: str = "mean",
) -> torch.Tensor:
    """loss_fn(logits) with each head ablated alone, minus the clean value: [layer, head].

    All heads of a layer run as one batch (head h ablated in copy h), one forward per layer.
    """
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    clean = loss_fn(model(tokens))
    reference = tokens if reference is None else reference
    effects = torch.zeros(n_layers, n_heads)
    batch = tokens.shape[0]
    expanded = tokens.repeat(n_heads, 1)  # [head * batch, pos]
    one_hot = torch.eye(n_heads, dtype=torch.bool)[:, None, None, :, None]  # [copy, 1, 1, head, 1]
    for layer in range(n_layers):
        name = f"blocks.{layer}.attn.hook_z"
        if method == "zero":
            value: torch.Tensor | float = 0.0
        else:
            _, cache = model.run_with_cache(reference, names_filter=name)
            value = cache[name].mean((0, 1))  # [head, d_head]

        def hook(z: torch.Tensor, hook: Any, value: torch.Tensor | float = value) -> torch.Tensor:
            z = z.view(n_heads, batch, *z.shape[1:])  # [copy, batch, pos, head, d_head]
            return torch.where(one_hot, value, z).flatten(0, 1)

        logits = model.run_with_hooks(expanded, fwd_hooks=[(name, hook)])
        effects[layer] = torch.stack([loss_fn(part) for part in logits.view(n_heads, batch, *logits.shape[1:])]) - clean
    return effects
