"""Edge-level interventions through hooks: the model run with chosen edges ablated, exactly and batched.

Ablating edge s -> r replaces, in receiver r's input only, sender s's output by its ablated value
(the corrupted run's, or its mean): input_r <- input_r - sum_s (1 - keep[s, r]) (a_s - a_s^ablated),
where a_s is the sender's output in this very run (so upstream ablations propagate, as in ACDC).
Keeping every edge gives the clean run; ablating every edge gives the corrupted run exactly, since each
receiver then reads only ablated outputs and the bias terms (the same in both runs).

Many circuits run at once: `keep` [circuit, sender, receiver] repeats the batch once per circuit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from ...model import HookedTransformer
from .graph import Graph

Metric = Callable[[torch.Tensor], torch.Tensor]
_FLAGS = ("use_split_qkv_input", "use_attn_result", "use_hook_mlp_in", "use_attn_in")


@contextmanager
def graph_hooks_enabled(model: HookedTransformer) -> Iterator[None]:
    """Turn on the per-head input / output hooks the graph needs (restoring the config afterwards)."""
    cfg = model.cfg
    saved = {flag: getattr(cfg, flag) for flag in _FLAGS}
    cfg.use_split_qkv_input, cfg.use_attn_result, cfg.use_attn_in = True, True, False
    cfg.use_hook_mlp_in = not cfg.attn_only
    try:
        yield
    finally:
        for flag, value in saved.items():
            setattr(cfg, flag, value)


def _sender_hook_names(graph: Graph) -> list[tuple[str, slice]]:
    """(hook name, sender slice) for every sender group; the input is blocks.0.hook_resid_pre."""
    names = [("blocks.0.hook_resid_pre", slice(0, 1))]
    for layer in range(graph.n_layers):
        first = graph.head_sender(layer, 0)
        names.append((f"blocks.{layer}.attn.hook_result", slice(first, first + graph.n_heads)))
        if graph.has_mlp:
            names.append((f"blocks.{layer}.hook_mlp_out", slice(graph.mlp_sender(layer), graph.mlp_sender(layer) + 1)))
    return names


def _as_senders(x: torch.Tensor) -> torch.Tensor:
    """[batch, pos, d_model] or [batch, pos, head, d_model] -> [batch, pos, n, d_model]."""
    return x if x.ndim == 4 else x[:, :, None]


def sender_activations(model: HookedTransformer, tokens: torch.Tensor, graph: Graph | None = None) -> torch.Tensor:
    """Every sender's output on `tokens`: [batch, pos, sender, d_model] (no gradients)."""
    graph = graph or Graph.from_model(model)
    b, p = tokens.shape
    acts = torch.empty(b, p, len(graph.senders), model.cfg.d_model, dtype=model.cfg.dtype, device=model.device)

    def store(where: slice) -> Callable[..., None]:
        def hook(x: torch.Tensor, hook: Any) -> None:
            acts[:, :, where] = _as_senders(x)

        return hook

    with graph_hooks_enabled(model), torch.no_grad():
        model.run_with_hooks(tokens, return_type=None, fwd_hooks=[(n, store(s)) for n, s in _sender_hook_names(graph)])
    return acts


def _receiver_hook_names(graph: Graph) -> list[tuple[str, slice, int]]:
    """(hook name, receiver slice, number of upstream senders) for each receiver group."""
    out = []
    for layer in range(graph.n_layers):
        start, h, kv = graph.qkv_receivers(layer).start, graph.n_heads, graph.kv_heads
        # hook_q_input has one copy per head, hook_k_input / hook_v_input one per KV head (grouped-query).
        for which, sl in (("q", slice(start, start + h)), ("k", slice(start + h, start + h + kv)),
                          ("v", slice(start + h + kv, start + h + 2 * kv))):  # fmt: skip
            out.append((f"blocks.{layer}.hook_{which}_input", sl, graph.n_upstream_attn(layer)))
        if graph.has_mlp:
            r = graph.mlp_receiver(layer)
            out.append((f"blocks.{layer}.hook_mlp_in", slice(r, r + 1), graph.n_upstream_mlp(layer)))
    out.append((f"blocks.{graph.n_layers - 1}.hook_resid_post", slice(graph.logits_receiver, None), len(graph.senders)))
    return out


def run_with_edges(
    model: HookedTransformer,
    tokens: torch.Tensor,
    ablated: torch.Tensor,
    keep: torch.Tensor,
    graph: Graph | None = None,
) -> torch.Tensor:
    """Logits [circuit, batch, pos, vocab] with only the edges in `keep` [circuit, sender, receiver] (or
    [sender, receiver]) intact; the others read `ablated` [batch or 1, pos, sender, d_model]."""
    graph = graph or Graph.from_model(model)
    single = keep.ndim == 2
    keep = (keep[None] if single else keep).to(model.device, model.cfg.dtype)
    n_circ, (b, p) = keep.shape[0], tokens.shape
    drop = (1 - keep) * graph.valid.to(keep.device)  # [circuit, sender, receiver]: 1 where ablated
    # delta[c, b, p, s] = a_s (this run) - a_s^ablated, filled as the forward reaches each sender.
    delta = torch.zeros(n_circ, b, p, len(graph.senders), model.cfg.d_model, dtype=model.cfg.dtype, device=model.device)

    def record(where: slice) -> Callable[..., None]:
        def hook(x: torch.Tensor, hook: Any) -> None:
            delta[:, :, :, where] = _as_senders(x).view(n_circ, b, p, -1, x.shape[-1]) - ablated[None, :, :, where]

        return hook

    def correct(where: slice, n_up: int) -> Callable[..., torch.Tensor | None]:
        weights = drop[:, :n_up, where]  # [circuit, upstream sender, receiver]
        if not weights.any():
            return lambda x, hook: None

        def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
            d = delta[:, :, :, :n_up]  # [circuit, batch, pos, upstream sender, d_model]
            fix = torch.einsum("cbpsd,csr->cbprd", d, weights)  # [circuit, batch, pos, receiver, d_model]
            fix = fix.reshape(n_circ * b, p, -1, x.shape[-1])
            return x - (fix if x.ndim == 4 else fix[:, :, 0])

        return hook

    hooks = [(name, record(sl)) for name, sl in _sender_hook_names(graph)]
    hooks += [(name, correct(sl, n_up)) for name, sl, n_up in _receiver_hook_names(graph)]
    repeated = tokens.repeat(n_circ, 1) if n_circ > 1 else tokens
    with graph_hooks_enabled(model), torch.no_grad():
        logits = model.run_with_hooks(repeated, fwd_hooks=hooks)
    logits = logits.view(n_circ, b, p, -1)
    return logits[0] if single else logits


def receiver_gradients(
    model: HookedTransformer,
    tokens: torch.Tensor,
    metric: Metric,
    graph: Graph | None = None,
    input_override: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """One forward + backward: (sender outputs [batch, pos, sender, d_model], d metric / d receiver input
    [batch, pos, receiver, d_model], metric value). `input_override` [batch, pos, d_model] replaces the
    input embedding (the integrated-gradients path)."""
    graph = graph or Graph.from_model(model)
    b, p = tokens.shape
    d = model.cfg.d_model
    acts = torch.empty(b, p, len(graph.senders), d, dtype=model.cfg.dtype, device=model.device)
    inputs: list[tuple[slice, torch.Tensor]] = []

    def leaf(x: torch.Tensor, hook: Any) -> torch.Tensor:
        x = (input_override if input_override is not None else x).detach().requires_grad_(True)
        return x

    def store(where: slice) -> Callable[..., None]:
        def hook(x: torch.Tensor, hook: Any) -> None:
            acts[:, :, where] = _as_senders(x).detach()

        return hook

    def watch(where: slice) -> Callable[..., None]:
        def hook(x: torch.Tensor, hook: Any) -> None:
            inputs.append((where, x))

        return hook

    hooks = [("blocks.0.hook_resid_pre", leaf)]
    hooks += [(n, store(s)) for n, s in _sender_hook_names(graph)]
    hooks += [(n, watch(s)) for n, s, _ in _receiver_hook_names(graph)]
    with graph_hooks_enabled(model), torch.enable_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
        value = metric(logits)
        if value.numel() != 1:
            raise ValueError(f"the metric must return one number for a batch, got shape {tuple(value.shape)}")
        grads_list = torch.autograd.grad(value, [x for _, x in inputs], allow_unused=True)
    grads = torch.zeros(b, p, len(graph.receivers), d, dtype=model.cfg.dtype, device=model.device)
    for (where, _), g in zip(inputs, grads_list, strict=True):
        if g is not None:
            grads[:, :, where] = _as_senders(g)
    return acts, grads, float(value.detach())
