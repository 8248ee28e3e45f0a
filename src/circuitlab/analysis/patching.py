"""Interventions: activation patching sweeps, path patching (Wang et al. 2022) and attribution patching.

Every function takes the model, clean and corrupted tokens [batch, pos] of the same shape, and a metric
(see `circuitlab.analysis.metrics`). Activation and attribution patching default to `direction="denoise"`
(TransformerLens's convention: run the corrupted prompt, patch clean activations in, so a normalised
logit difference reads 1 where a patch restores the clean behaviour); `"noise"` runs the clean prompt
and patches corrupted activations in. Path patching defaults to `"noise"`, as in Wang et al.

Activation patching sweeps run on `patch_engine`: each cell gets only the work it needs (cells whose
activations are equal in both runs are not run; a patch at layer l, first differing position p reruns
layers >= l at positions >= p, reading the patched-into run's keys and values before p; the last block and
the unembedding run only where the metric reads), cells batched as [variant * batch, pos, d_model] in
chunks (`max_variants`, or an element budget). With hooks live on the model the sweeps run through them
instead (every position recomputed from the patched layer on). Metrics written for one run's logits
[batch, pos, vocab] (TransformerLens style) are wrapped (`metrics.adapt`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from tqdm import tqdm

from ..model.names import get_act_name
from . import patch_engine
from .metrics import Metric, PositionMetric, adapt, is_batched, select_pos

if TYPE_CHECKING:
    from ..model.transformer import HookedTransformer

Direction = Literal["denoise", "noise"]
RESID_ACTS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
HEAD_ACTS = ("z", "result", "q", "k", "v")
PATTERN_ACTS = ("pattern",)
# Activations held per chunk, roughly (~48 MiB in float32). It bounds memory, and bigger chunks are slower: on a
# GPT-2-small head sweep (8 x 20 tokens) 37 variants per chunk took 8.8 s, 12 variants 6.2 s, 4 variants 6.7 s.
_ELEMENT_BUDGET = 12 * 2**20


# ---- shared plumbing -----------------------------------------------------------------------------
def check_pair(
    model: HookedTransformer, clean_tokens: torch.Tensor, corrupted_tokens: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated (clean, corrupted) token tensors [batch, pos]; different shapes raise ValueError."""
    clean, corrupted = model._check_tokens(clean_tokens), model._check_tokens(corrupted_tokens)
    if clean.shape != corrupted.shape:
        raise ValueError(
            f"clean tokens have shape {tuple(clean.shape)} but corrupted tokens have shape "
            f"{tuple(corrupted.shape)}: they must be equal length (same batch and positions) so that "
            "activations can be swapped position by position (pad them, or build matched prompts such as "
            "IOI's ABC corruption)"
        )
    return clean, corrupted


def _base_and_source(clean: torch.Tensor, corrupted: torch.Tensor, direction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens of the run patched into, tokens of the run the patches come from)."""
    if direction == "denoise":
        return corrupted, clean
    if direction == "noise":
        return clean, corrupted
    raise ValueError(f"direction={direction!r} is invalid: expected 'denoise' or 'noise'")


def _caches(
    model: HookedTransformer, tokens: Sequence[torch.Tensor], names: list[str]
) -> list[dict[str, torch.Tensor]]:
    out = []
    for t in tokens:
        _, cache = model.run_with_cache(t, names_filter=names, return_cache_object=False)
        out.append(cache)
    return out


def _progress(total: int, progress: bool | None, desc: str) -> tqdm:
    """A tqdm bar over chunks: always (True), never (False), or auto (None: only once it has run 2 s)."""
    return tqdm(total=total, desc=desc, disable=progress is False, delay=0 if progress else 2.0, leave=False)


def _expand(x: torch.Tensor, n_var: int) -> torch.Tensor:
    """[batch, ...] -> [variant * batch, ...]: one copy per patch variant."""
    return x.unsqueeze(0).expand(n_var, *x.shape).reshape(n_var * x.shape[0], *x.shape[1:])


def _chunk_size(model: HookedTransformer, n_seq: int, n_pos: int, metric: Metric, max_variants: int | None) -> int:
    if max_variants is not None:
        if max_variants < 1:
            raise ValueError(f"max_variants={max_variants} is invalid: expected a positive integer")
        return max_variants
    cfg = model.cfg
    width = max(cfg.d_mlp or 0, 4 * cfg.d_model, cfg.n_heads * n_pos)
    read = getattr(metric, "read_positions", None)
    n_read = 1 if isinstance(metric, PositionMetric) else len(read) if read else n_pos
    logits = n_seq * cfg.d_vocab_out * n_read
    return max(1, _ELEMENT_BUDGET // (n_seq * n_pos * width + logits))


def metric_of_resid(model: HookedTransformer, resid: torch.Tensor, metric: Metric, n_var: int) -> torch.Tensor:
    """The metric of each variant from the final residual stream [variant * batch, pos, d_model] -> [variant].

    A `PositionMetric` gets only the positions it reads unembedded."""
    resid = resid.view(n_var, -1, *resid.shape[1:])  # [variant, batch, pos, d_model]
    final_ln = model.ln_final if model.cfg.normalization_type is not None else (lambda x: x)
    if isinstance(metric, PositionMetric):
        values = metric.reduce(model.unembed(final_ln(select_pos(resid, metric.pos))))
    else:
        values = metric(model.unembed(final_ln(resid)))
    if values.shape != (n_var,):
        raise ValueError(
            f"the metric returned shape {tuple(values.shape)} for logits of {n_var} patch variants: a metric "
            "must map logits [..., batch, pos, vocab] to [...] (e.g. a mean over the batch)"
        )
    return values


def run_from_layer(
    model: HookedTransformer,
    resid: torch.Tensor,
    start_layer: int,
    metric: Metric,
    n_var: int,
    fwd_hooks: Sequence[tuple[str, Callable]] = (),
    stop_layer: int | None = None,
) -> torch.Tensor | None:
    """Run blocks start_layer.. on `resid` [variant * batch, pos, d_model] under `fwd_hooks`; the metric per
    variant [variant], or None when `stop_layer` ends the run early (for hooks that only capture)."""
    pos_embed = None  # a shortformer model adds its positional embedding to every layer's queries and keys
    if model.cfg.positional_embedding_type == "shortformer":
        pos_embed = model.pos_embed.W_pos[: resid.shape[1]].expand(resid.shape[0], -1, -1)
    with model.hooks(fwd_hooks):
        for block in model.blocks[start_layer:stop_layer]:
            resid = block(resid, shortformer_pos_embed=pos_embed)
        if stop_layer is not None:
            return None
        return metric_of_resid(model, resid, metric, n_var)


# ---- activation patching -------------------------------------------------------------------------
def _cell_masks(act: str, shape: Sequence[int], by_pos: bool) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Boolean masks [cell, *activation shape without batch (broadcastable)] and the grid shape of the cells."""
    eye = lambda n: torch.eye(n, dtype=torch.bool)  # noqa: E731
    if act in RESID_ACTS:  # [pos, d_model]
        n_pos = shape[0]
        if by_pos:
            return eye(n_pos)[:, :, None], (n_pos,)
        return torch.ones(1, n_pos, 1, dtype=torch.bool), ()
    if act in PATTERN_ACTS:  # [head, query_pos, key_pos]; "by position" = one query (destination) row
        n_heads, n_pos = shape[0], shape[1]
        if not by_pos:
            return eye(n_heads)[:, :, None, None], (n_heads,)
        masks = eye(n_pos)[:, None, None, :, None] & eye(n_heads)[None, :, :, None, None]  # [q, h, h', q', 1]
        return masks.reshape(n_pos * n_heads, n_heads, n_pos, 1), (n_pos, n_heads)
    if act in HEAD_ACTS:  # [pos, head, d_head or d_model]
        n_pos, n_heads = shape[0], shape[1]
        if not by_pos:
            return eye(n_heads)[:, None, :, None], (n_heads,)
        masks = eye(n_pos)[:, None, :, None, None] & eye(n_heads)[None, :, None, :, None]  # [p, h, p', h', 1]
        return masks.reshape(n_pos * n_heads, n_pos, n_heads, 1), (n_pos, n_heads)
    raise ValueError(f"act={act!r} cannot be patched: expected one of {[*RESID_ACTS, *HEAD_ACTS, *PATTERN_ACTS]}")


def patch_activation(
    model: HookedTransformer,
    clean_tokens: torch.Tensor,
    corrupted_tokens: torch.Tensor,
    metric: Metric,
    act: str,
    by_pos: bool = True,
    layers: Sequence[int] | None = None,
    direction: Direction = "denoise",
    max_variants: int | None = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """Patch one cell of `act` at a time and return the metric of each patched run.

    act: "resid_pre" / "resid_mid" / "resid_post" / "attn_out" / "mlp_out" -> [layer, pos] (by_pos) or [layer]
    (all positions at once); "z" / "result" / "q" / "k" / "v" (per head) -> [layer, head] or, by_pos,
    [layer, pos, head]; "pattern" (per head; by_pos patches one destination row) -> the same shapes.
    `layers` restricts the sweep (rows follow its order).
    """
    clean, corrupted = check_pair(model, clean_tokens, corrupted_tokens)
    base, source = _base_and_source(clean, corrupted, direction)
    _cell_masks(act, (1, 1, 1), by_pos)  # validates `act`
    layers = list(range(model.cfg.n_layers)) if layers is None else [int(l) for l in layers]
    for l in layers:
        if not 0 <= l < model.cfg.n_layers:
            raise ValueError(f"layer {l} is out of range for a model with {model.cfg.n_layers} layers")
    sites = [get_act_name(act, l) for l in layers]
    n_seq, n_pos = base.shape
    if not is_batched(metric):  # a metric of one run's logits [batch, pos, vocab]: wrap it (TL style)
        with torch.no_grad():
            metric = adapt(metric, model(base))
    chunk = _chunk_size(model, n_seq, n_pos, metric, max_variants)
    if not patch_engine.supports(model):  # hooks live on the model: run every cell through them
        return _hooked_sweep(model, base, source, metric, act, by_pos, layers, chunk, progress)
    with torch.no_grad():
        (source_cache,) = _caches(model, (source,), sites)
    cells, grid = [], ()
    for layer, site in zip(layers, sites, strict=True):
        src = source_cache[site]
        masks, grid = _cell_masks(act, src.shape[1:], by_pos)
        for mask in masks.to(src.device):
            cells.append(patch_engine.Cell(len(cells), layer, _masked_patch(mask, src)))
    values = patch_engine.sweep(
        model, base, act, cells, metric, chunk, lambda n: _progress(n, progress, f"patching {act}")
    )
    return values.view(len(layers), *grid).to(_out_dtype(model))


def _masked_patch(mask: torch.Tensor, source: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The cell's patch: the source activation where `mask` is on, the base one elsewhere."""
    return lambda base: torch.where(mask, source, base)


def _hooked_sweep(
    model: HookedTransformer,
    base: torch.Tensor,
    source: torch.Tensor,
    metric: Metric,
    act: str,
    by_pos: bool,
    layers: list[int],
    chunk: int,
    progress: bool | None,
) -> torch.Tensor:
    """The sweep through the model's hooks (every position recomputed from the patched layer on): used when
    other hooks are live on the model, so that they fire in every patched run."""
    sites = [get_act_name(act, l) for l in layers]
    starts = [get_act_name("resid_pre", l) for l in layers]
    with torch.no_grad():
        base_cache, source_cache = _caches(model, (base, source), sorted(set(sites + starts)))
        jobs = []
        grid: tuple[int, ...] = ()
        for row, (layer, site) in enumerate(zip(layers, sites, strict=True)):
            masks, grid = _cell_masks(act, source_cache[site].shape[1:], by_pos)
            masks = masks.to(base_cache[site].device)
            jobs += [(row, layer, site, start, masks[start : start + chunk]) for start in range(0, len(masks), chunk)]
        out = torch.empty(len(layers), math.prod(grid), dtype=torch.float64)
        with _progress(len(jobs), progress, f"patching {act}") as bar:
            for row, layer, site, start, masks in jobs:
                values = _patched_chunk(model, base_cache, source_cache, metric, act, layer, site, masks)
                out[row, start : start + len(masks)] = values.double().cpu()
                bar.update()
    return out.view(len(layers), *grid).to(_out_dtype(model))


def _out_dtype(model: HookedTransformer) -> torch.dtype:
    return model.cfg.dtype if model.cfg.dtype in (torch.float32, torch.float64) else torch.float32


def _patched_chunk(
    model: HookedTransformer,
    base_cache: dict[str, torch.Tensor],
    source_cache: dict[str, torch.Tensor],
    metric: Metric,
    act: str,
    layer: int,
    site: str,
    masks: torch.Tensor,
) -> torch.Tensor:
    """Metric [variant] for variants whose cells `masks` [variant, ...] of `site` come from the source run."""
    n_var = masks.shape[0]
    source, base = source_cache[site], base_cache[site]
    masks = masks.unsqueeze(1)  # [variant, 1 (batch), ...]
    if act in ("resid_pre", "resid_post"):  # patch the stream directly and start from it
        resid = torch.where(masks, source, base).flatten(0, 1)  # [variant * batch, pos, d_model]
        return run_from_layer(model, resid, layer + (act == "resid_post"), metric, n_var)

    def patch(x: torch.Tensor, hook: object) -> torch.Tensor:
        return torch.where(masks, source, x.reshape(n_var, -1, *x.shape[1:])).reshape(x.shape)

    resid = _expand(base_cache[get_act_name("resid_pre", layer)], n_var)
    return run_from_layer(model, resid, layer, metric, n_var, fwd_hooks=[(site, patch)])


def patch_resid_pre(
    model: HookedTransformer, clean_tokens: torch.Tensor, corrupted_tokens: torch.Tensor, metric: Metric, **kwargs: Any
) -> torch.Tensor:
    """Residual stream entering each block, one position at a time: [layer, pos]."""
    return patch_activation(model, clean_tokens, corrupted_tokens, metric, "resid_pre", **kwargs)


def patch_resid_mid(
    model: HookedTransformer, clean_tokens: torch.Tensor, corrupted_tokens: torch.Tensor, metric: Metric, **kwargs: Any
) -> torch.Tensor:
    """Residual stream between attention and MLP, one position at a time: [layer, pos]."""
    return patch_activation(model, clean_tokens, corrupted_tokens, metric, "resid_mid", **kwargs)


def patch_resid_post(
    model: HookedTransformer, clean_tokens: torch.Tensor, corrupted_tokens: torch.Tensor, metric: Metric, **kwargs: Any
) -> torch.Tensor:
    """Residual stream leaving each block, one position at a time: [layer, pos]."""
    return patch_activation(model, clean_tokens, corrupted_tokens, metric, "resid_post", **kwargs)


def patch_attn_out(
    model: HookedTransformer, clean_tokens: torch.Tensor, corrupted_tokens: torch.Tensor, metric: Metric, **kwargs: Any
) -> torch.Tensor:
    """Attention-layer outputs, one position at a time: [layer, pos]."""
    return patch_activation(model, clean_tokens, corrupted_tokens, metric, "attn_out", **kwargs)


def patch_mlp_out(
    model: HookedTransformer, clean_tokens: torch.Tensor, corrupted_tokens: torch.Tensor, metric: Metric, **kwargs: Any
) -> torch.Tensor:
    """MLP outputs, one position at a time: [layer, pos]."""
    return patch_activation(model, clean_tokens, corrupted_tokens, metric, "mlp_out", **kwargs)


def patch_head_out_all_pos(
    model: HookedTransformer,
    clean_tokens: torch.Tensor,
    corrupted_tokens: torch.Tensor,
    metric: Metric,
    act: str = "z",
    **kwargs: Any,
) -> torch.Tensor:
    """Each head's output (`z`, or `result` with use_attn_result) at every position: [layer, head]."""
    return patch_activation(model, clean_tokens, corrupted_tokens, metric, act, by_pos=False, **kwargs)


def patch_head_out_by_pos(
    model: HookedTransformer,
    clean_tokens: torch.Tensor,
    corrupted_tokens: torch.Tensor,
    metric: Metric,
    act: str = "z",
    **kwargs: Any,
) -> torch.Tensor:
    """Each head's output at one position at a time: [layer, pos, head]."""
    return patch_activation(model, clean_tokens, corrupted_tokens, metric, act, by_pos=True, **kwargs)


def patch_head_pattern_all_pos(
    model: HookedTransformer, clean_tokens: torch.Tensor, corrupted_tokens: torch.Tensor, metric: Metric, **kwargs: Any
) -> torch.Tensor:
    """Each head's whole attention pattern: [layer, head]."""
    return patch_activation(model, clean_tokens, corrupted_tokens, metric, "pattern", by_pos=False, **kwargs)


def patch_head_pattern_by_pos(
    model: HookedTransformer, clean_tokens: torch.Tensor, corrupted_tokens: torch.Tensor, metric: Metric, **kwargs: Any
) -> torch.Tensor:
    """Each head's attention pattern, one destination (query) row at a time: [layer, pos, head]."""
    return patch_activation(model, clean_tokens, corrupted_tokens, metric, "pattern", by_pos=True, **kwargs)


# ---- path patching -------------------------------------------------------------------------------
Head = tuple[int, int]


def path_patch(
    model: HookedTransformer,
    clean_tokens: torch.Tensor,
    corrupted_tokens: torch.Tensor,
    metric: Metric,
    receivers: str | Sequence[Head] = "resid",
    senders: Sequence[Head] | None = None,
    receiver_input: str = "qkv",
    freeze_mlps: bool = False,
    direction: Direction = "noise",
    max_variants: int | None = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """Path patching (Wang et al. 2022): the effect of sender heads on the metric through the receivers only.

    Run 1 and 2 cache the base (clean, for "noise") and source (corrupted) runs. Run 2': the base run with
    the senders' outputs (`hook_z`) taken from the source run and every other head's output frozen to the
    base run (MLPs recomputed unless `freeze_mlps`); the receivers' inputs are recorded there: the
    residual stream at the end ("resid": the metric is read from this run), or the `receiver_input`
    ("q", "k", "v" or a combination) of receiver heads [(layer, head), ...]. Run 3: the base run with
    only those receiver inputs replaced; its metric is returned.

    senders: a list of heads patched together -> a 0-d tensor; None -> each head upstream of every
    receiver on its own, batched -> [layer, head] (NaN for heads not upstream of all receivers).
    """
    clean, corrupted = check_pair(model, clean_tokens, corrupted_tokens)
    base, source = _base_and_source(clean, corrupted, direction)
    cfg = model.cfg
    n_layers, n_heads = cfg.n_layers, cfg.n_heads
    receiver_heads = _validate_receivers(receivers, receiver_input, n_layers, n_heads)
    first_receiver = min((l for l, _ in receiver_heads), default=n_layers)
    if senders is None:
        variants = [[(l, h)] for l in range(first_receiver) for h in range(n_heads)]
    else:
        variants = [[(int(l), int(h)) for l, h in senders]]
        for l, h in variants[0]:
            if not (0 <= l < first_receiver and 0 <= h < n_heads):
                raise ValueError(
                    f"sender head ({l}, {h}) must exist and lie in a layer before every receiver "
                    f"(first receiver layer {first_receiver})"
                )
        if not variants[0]:
            raise ValueError("senders is empty: give at least one (layer, head)")
    if freeze_mlps and cfg.attn_only:
        freeze_mlps = False
    names = [get_act_name("resid_pre", l) for l in range(n_layers)] + [get_act_name("z", l) for l in range(n_layers)]
    names += [get_act_name("mlp_out", l) for l in range(n_layers)] if freeze_mlps else []
    n_seq, n_pos = base.shape
    with torch.no_grad():
        base_cache, source_cache = _caches(model, (base, source), names)
        masks = torch.zeros(len(variants), n_layers, n_heads, dtype=torch.bool)
        for i, heads in enumerate(variants):
            for l, h in heads:
                masks[i, l, h] = True
        starts = torch.tensor([min(l for l, _ in heads) for heads in variants])
        chunk = _chunk_size(model, n_seq, n_pos, metric, max_variants)
        jobs = []
        for start in sorted(set(starts.tolist())):
            idx = (starts == start).nonzero().flatten()
            jobs += [(start, idx[i : i + chunk]) for i in range(0, len(idx), chunk)]
        values = torch.empty(len(variants), dtype=torch.float64)
        with _progress(len(jobs), progress, "path patching") as bar:
            for start, idx in jobs:
                job_masks = masks[idx].to(model.device)
                values[idx] = _path_chunk(
                    model, base_cache, source_cache, metric, job_masks, start, receiver_heads, receiver_input,
                    freeze_mlps,
                ).double().cpu()  # fmt: skip
                bar.update()
    dtype = _out_dtype(model)
    if senders is not None:
        return values[0].to(dtype)
    grid = torch.full((n_layers, n_heads), float("nan"), dtype=torch.float64)
    grid[:first_receiver] = values.view(first_receiver, n_heads)
    return grid.to(dtype)


def _validate_receivers(receivers: str | Sequence[Head], receiver_input: str, n_layers: int, n_heads: int) -> list:
    if isinstance(receivers, str):
        if receivers != "resid":
            raise ValueError(f"receivers={receivers!r} is invalid: expected 'resid' or a list of (layer, head)")
        return []
    heads = [(int(l), int(h)) for l, h in receivers]
    if not heads:
        raise ValueError("receivers is empty: give 'resid' or at least one (layer, head)")
    for l, h in heads:
        if not (0 <= l < n_layers and 0 <= h < n_heads):
            raise ValueError(f"receiver head ({l}, {h}) does not exist in a {n_layers} x {n_heads} model")
    if not receiver_input or set(receiver_input) - set("qkv"):
        raise ValueError(f"receiver_input={receiver_input!r} is invalid: expected letters from 'qkv'")
    return heads


def _path_chunk(
    model: HookedTransformer,
    base_cache: dict[str, torch.Tensor],
    source_cache: dict[str, torch.Tensor],
    metric: Metric,
    masks: torch.Tensor,
    start: int,
    receiver_heads: list[Head],
    receiver_input: str,
    freeze_mlps: bool,
) -> torch.Tensor:
    """Runs 2' and 3 of path patching for variants with sender masks [variant, layer, head]."""
    n_var, n_layers = masks.shape[0], model.cfg.n_layers
    last = max((l for l, _ in receiver_heads), default=n_layers - 1)

    def freeze_heads(layer: int) -> Callable:
        sender = masks[:, layer][:, None, None, :, None]  # [variant, 1, 1, head, 1]
        frozen = torch.where(sender, source_cache[get_act_name("z", layer)], base_cache[get_act_name("z", layer)])

        def hook(z: torch.Tensor, hook: object) -> torch.Tensor:  # [variant * batch, pos, head, d_head]
            return frozen.reshape(z.shape)

        return hook

    def freeze_mlp(layer: int) -> Callable:
        return lambda x, hook: _expand(base_cache[get_act_name("mlp_out", layer)], n_var)

    hooks = [(get_act_name("z", l), freeze_heads(l)) for l in range(start, last + 1)]
    hooks += [(get_act_name("mlp_out", l), freeze_mlp(l)) for l in range(start, last + 1)] if freeze_mlps else []
    resid = _expand(base_cache[get_act_name("resid_pre", start)], n_var)
    if not receiver_heads:  # receiver: the residual stream at the end, read by the unembedding
        return run_from_layer(model, resid, start, metric, n_var, fwd_hooks=hooks)

    # Run 2': record the receivers' inputs; run 3: the base run with only those replaced.
    group = model.blocks[0].attn.group
    recorded: dict[str, torch.Tensor] = {}
    patch_hooks = []
    for layer in sorted({l for l, _ in receiver_heads}):
        for letter in receiver_input:
            name = get_act_name(letter, layer)
            heads = [h if letter == "q" else h // group for l, h in receiver_heads if l == layer]
            n_slots = model.cfg.n_heads if letter == "q" else model.cfg.n_kv_heads
            chosen = torch.zeros(n_slots, dtype=torch.bool, device=masks.device)
            chosen[heads] = True
            hooks.append((name, _recorder(recorded, name)))
            patch_hooks.append((name, _replacer(recorded, name, chosen[:, None])))
    run_from_layer(model, resid, start, metric, n_var, fwd_hooks=hooks, stop_layer=last + 1)
    first = min(l for l, _ in receiver_heads)
    resid = _expand(base_cache[get_act_name("resid_pre", first)], n_var)
    return run_from_layer(model, resid, first, metric, n_var, fwd_hooks=patch_hooks)


def _recorder(store: dict[str, torch.Tensor], name: str) -> Callable:
    def hook(x: torch.Tensor, hook: object) -> None:
        store[name] = x.clone()

    return hook


def _replacer(store: dict[str, torch.Tensor], name: str, chosen: torch.Tensor) -> Callable:
    def hook(x: torch.Tensor, hook: object) -> torch.Tensor:  # [variant * batch, pos, head, d_head]
        return torch.where(chosen, store[name], x)

    return hook


# ---- attribution patching ------------------------------------------------------------------------
def attribution_patch(
    model: HookedTransformer,
    clean_tokens: torch.Tensor,
    corrupted_tokens: torch.Tensor,
    metric: Metric,
    act: str,
    by_pos: bool = True,
    direction: Direction = "denoise",
) -> torch.Tensor:
    """Linear estimate of `patch_activation(..., act, by_pos, direction=direction)` from one forward and one
    backward pass: metric(base) + sum over the cell of d metric / d activation * (source - base).

    The gradient is taken on the run patched into (the corrupted run for "denoise", the clean run for
    "noise"). Same shapes as `patch_activation`; exact where the metric is linear in the activation.
    """
    clean, corrupted = check_pair(model, clean_tokens, corrupted_tokens)
    base, source = _base_and_source(clean, corrupted, direction)
    names = [get_act_name(act, l) for l in range(model.cfg.n_layers)]
    _cell_masks(act, (1, 1, 1), by_pos)  # validates `act`
    with torch.no_grad():
        (source_cache,) = _caches(model, (source,), names)
    captured: dict[str, torch.Tensor] = {}

    def capture(x: torch.Tensor, hook: object) -> torch.Tensor | None:
        if act in PATTERN_ACTS:  # a returned copy: the pattern itself must carry the gradient (a hook that only
            x = x.clone()  # reads a pattern leaves the attention on the fused kernel, off the pattern's graph)
        captured[hook.name] = x
        return x if act in PATTERN_ACTS else None

    def leaf(x: torch.Tensor, hook: object) -> torch.Tensor:  # gradients flow even if weights are frozen
        return x.detach().requires_grad_(True)

    with torch.enable_grad(), model.hooks([("hook_embed", leaf), *[(n, capture) for n in names]]):
        value = metric(model(base))
        if value.ndim != 0:
            raise ValueError(f"the metric must return a scalar for one run, got shape {tuple(value.shape)}")
        grads = torch.autograd.grad(value, [captured[n] for n in names], allow_unused=True)
    rows = []
    for name, grad in zip(names, grads, strict=True):
        delta = source_cache[name] - captured[name].detach()
        prod = delta * grad if grad is not None else torch.zeros_like(delta)
        rows.append(_sum_cells(prod, act, by_pos))
    return value.detach() + torch.stack(rows)


def _sum_cells(prod: torch.Tensor, act: str, by_pos: bool) -> torch.Tensor:
    """Sum grad * delta over everything but the cell's coordinates (batch included)."""
    if act in RESID_ACTS:  # [batch, pos, d_model]
        return prod.sum((0, 2)) if by_pos else prod.sum()
    if act in PATTERN_ACTS:  # [batch, head, query_pos, key_pos]
        return prod.sum((0, 3)).T if by_pos else prod.sum((0, 2, 3))
    return prod.sum((0, 3)) if by_pos else prod.sum((0, 1, 3))  # [batch, pos, head, d] -> [pos, head] / [head]
