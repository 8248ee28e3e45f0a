"""TransformerLens 2.x's `transformer_lens.patching`, same names, signatures, shapes and semantics, on
circuitlab's compute-floor engine (`circuitlab.analysis.patch_engine`).

Every function takes `(model, corrupted_tokens, clean_cache, patching_metric)`: it runs the corrupted tokens
with one activation (one cell) taken from `clean_cache` at a time and returns the metric of each patched
run, as a float32 tensor on the model's device. `patching_metric` is a TL-style metric of one run's logits
[batch, pos, vocab] -> a number; it is wrapped for the batched engine (the positions it reads are probed, so
only those are unembedded), and circuitlab's own metrics (`circuitlab.analysis.logit_diff`, ...) work too.
Cells whose clean and corrupted activations are equal are not run (their value is the unpatched metric).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from .analysis import patch_engine
from .analysis.metrics import adapt, is_batched
from .analysis.patching import _chunk_size, _progress
from .model.names import get_act_name

if TYPE_CHECKING:
    from .model.transformer import HookedTransformer

ENGINE_ACTS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "q", "k", "v", "z", "result", "pattern")
MAX_VARIANTS: int | None = None  # variants per batch; None: sized by the element budget


# ---- patch setters (TL's) ------------------------------------------------------------------------
def layer_pos_patch_setter(corrupted_activation, index, clean_activation):
    """index = [layer, pos] on an activation [batch, pos, ...]."""
    assert len(index) == 2
    _, pos = index
    corrupted_activation[:, pos, ...] = clean_activation[:, pos, ...]
    return corrupted_activation


def layer_pos_head_vector_patch_setter(corrupted_activation, index, clean_activation):
    """index = [layer, pos, head_index] on an activation [batch, pos, head_index, ...]."""
    assert len(index) == 3
    _, pos, head_index = index
    corrupted_activation[:, pos, head_index] = clean_activation[:, pos, head_index]
    return corrupted_activation


def layer_head_vector_patch_setter(corrupted_activation, index, clean_activation):
    """index = [layer, head_index] on an activation [batch, pos, head_index, ...]."""
    assert len(index) == 2
    _, head_index = index
    corrupted_activation[:, :, head_index] = clean_activation[:, :, head_index]
    return corrupted_activation


def layer_head_pattern_patch_setter(corrupted_activation, index, clean_activation):
    """index = [layer, head_index] on a pattern [batch, head_index, dest_pos, src_pos]."""
    assert len(index) == 2
    _, head_index = index
    corrupted_activation[:, head_index, :, :] = clean_activation[:, head_index, :, :]
    return corrupted_activation


def layer_head_pos_pattern_patch_setter(corrupted_activation, index, clean_activation):
    """index = [layer, head_index, dest_pos] on a pattern [batch, head_index, dest_pos, src_pos]."""
    assert len(index) == 3
    _, head_index, dest_pos = index
    corrupted_activation[:, head_index, dest_pos, :] = clean_activation[:, head_index, dest_pos, :]
    return corrupted_activation


def layer_head_dest_src_pos_pattern_patch_setter(corrupted_activation, index, clean_activation):
    """index = [layer, head_index, dest_pos, src_pos] on a pattern [batch, head_index, dest_pos, src_pos]."""
    assert len(index) == 4
    _, head_index, dest_pos, src_pos = index
    corrupted_activation[:, head_index, dest_pos, src_pos] = clean_activation[:, head_index, dest_pos, src_pos]
    return corrupted_activation


def make_df_from_ranges(column_max_ranges: Sequence[int], column_names: Sequence[str]) -> Any:
    """A pandas DataFrame of every index combination (the last column fastest), as TL's."""
    import pandas as pd

    return pd.DataFrame(list(itertools.product(*[range(r) for r in column_max_ranges])), columns=list(column_names))


# ---- the generic sweep ---------------------------------------------------------------------------
def _axis_ranges(model: HookedTransformer, tokens: torch.Tensor, activation_name: str) -> dict[str, int]:
    heads = model.cfg.n_heads
    if activation_name in ("k", "v") and model.cfg.n_key_value_heads is not None:
        heads = model.cfg.n_key_value_heads
    n_pos = tokens.shape[-1]
    return dict(layer=model.cfg.n_layers, pos=n_pos, head_index=heads, head=heads, src_pos=n_pos, dest_pos=n_pos)


def generic_activation_patch(
    model: HookedTransformer,
    corrupted_tokens: torch.Tensor,
    clean_cache: Any,
    patching_metric: Callable[[torch.Tensor], torch.Tensor],
    patch_setter: Callable[[torch.Tensor, Sequence[int], torch.Tensor], torch.Tensor],
    activation_name: str,
    index_axis_names: Sequence[str] | None = None,
    index_df: Any = None,
    return_index_df: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, Any]:
    """For every index (a row of `index_df`, or every combination of `index_axis_names`; the first is the
    layer), run the corrupted tokens with `patch_setter(corrupted activation, index, clean activation)` at
    `activation_name` of that layer and record `patching_metric` of the logits. Returns one dimension per
    axis, or a flat tensor with one value per row of `index_df` (and the index table if asked)."""
    corrupted_tokens = model._check_tokens(corrupted_tokens)
    if index_df is None:
        if index_axis_names is None:
            raise ValueError("give index_axis_names (e.g. ['layer', 'pos']) or an index_df of the cells to patch")
        ranges = _axis_ranges(model, corrupted_tokens, activation_name)
        unknown = [a for a in index_axis_names if a not in ranges]
        if unknown:
            raise ValueError(f"unknown index axis names {unknown}: expected names from {sorted(ranges)}")
        shape = [ranges[a] for a in index_axis_names]
        indices = [list(i) for i in itertools.product(*[range(r) for r in shape])]
        if return_index_df:
            index_df = make_df_from_ranges(shape, index_axis_names)
    else:
        if index_axis_names is not None:
            raise ValueError("give index_axis_names or index_df, not both")
        indices = [[int(v) for v in row] for row in index_df.itertuples(index=False)]
        shape = [len(indices)]
    values = _sweep(model, corrupted_tokens, clean_cache, patching_metric, patch_setter, activation_name, indices)
    out = values.to(torch.float32).view(shape).to(model.cfg.device)
    return (out, index_df) if return_index_df else out


def _sweep(
    model: HookedTransformer,
    tokens: torch.Tensor,
    clean_cache: Any,
    metric: Callable,
    setter: Callable,
    act: str,
    indices: list[list[int]],
) -> torch.Tensor:
    """The metric of each patched run [len(indices)] (float64)."""
    with torch.no_grad():
        if not is_batched(metric):
            metric = adapt(metric, model(tokens))
        sources = {}
        for index in indices:
            name = get_act_name(act, index[0])
            if name not in sources:
                sources[name] = clean_cache[name]
        if act in ENGINE_ACTS and patch_engine.supports(model):
            cells = [
                patch_engine.Cell(i, index[0], _setter_patch(setter, index, sources[get_act_name(act, index[0])]))
                for i, index in enumerate(indices)
            ]
            chunk = _chunk_size(model, tokens.shape[0], tokens.shape[1], metric, MAX_VARIANTS)
            bar = lambda n: _progress(n, None, f"patching {act}")  # noqa: E731
            return patch_engine.sweep(model, tokens, act, cells, metric, chunk, bar)
        values = torch.empty(len(indices), dtype=torch.float64)  # any other hook: one forward per cell
        with _progress(len(indices), None, f"patching {act}") as bar:
            for i, index in enumerate(indices):
                name = get_act_name(act, index[0])
                hook = lambda x, hook, index=index, name=name: setter(x, index, sources[name])  # noqa: E731
                values[i] = float(metric(model.run_with_hooks(tokens, fwd_hooks=[(name, hook)])))
                bar.update()
        return values


def _setter_patch(setter: Callable, index: list[int], source: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda base: setter(base.clone(), index, source)


# ---- TL's named sweeps ---------------------------------------------------------------------------
def _named(setter: Callable, act: str, axes: tuple[str, ...], doc: str) -> Callable:
    fn = partial(generic_activation_patch, patch_setter=setter, activation_name=act, index_axis_names=axes)
    fn.__doc__ = (
        f"Activation patching of {doc}. Returns a tensor of shape [{', '.join(axes)}] (see "
        "generic_activation_patch): model, corrupted_tokens [batch, pos], clean_cache, patching_metric."
    )
    return fn


_LP, _LPH, _LH = ("layer", "pos"), ("layer", "pos", "head"), ("layer", "head")
get_act_patch_resid_pre = _named(layer_pos_patch_setter, "resid_pre", _LP, "the residual stream entering each block")
get_act_patch_resid_mid = _named(layer_pos_patch_setter, "resid_mid", _LP, "the residual stream between attn and MLP")
get_act_patch_attn_out = _named(layer_pos_patch_setter, "attn_out", _LP, "each attention layer's output")
get_act_patch_mlp_out = _named(layer_pos_patch_setter, "mlp_out", _LP, "each MLP layer's output")
get_act_patch_attn_head_out_by_pos = _named(layer_pos_head_vector_patch_setter, "z", _LPH, "each head's output")
get_act_patch_attn_head_q_by_pos = _named(layer_pos_head_vector_patch_setter, "q", _LPH, "each head's queries")
get_act_patch_attn_head_k_by_pos = _named(layer_pos_head_vector_patch_setter, "k", _LPH, "each (kv) head's keys")
get_act_patch_attn_head_v_by_pos = _named(layer_pos_head_vector_patch_setter, "v", _LPH, "each (kv) head's values")
get_act_patch_attn_head_pattern_by_pos = _named(
    layer_head_pos_pattern_patch_setter, "pattern", ("layer", "head_index", "dest_pos"), "each head's pattern row"
)
get_act_patch_attn_head_pattern_dest_src_pos = _named(
    layer_head_dest_src_pos_pattern_patch_setter,
    "pattern",
    ("layer", "head_index", "dest_pos", "src_pos"),
    "each entry of each head's pattern",
)
get_act_patch_attn_head_out_all_pos = _named(layer_head_vector_patch_setter, "z", _LH, "each head's output")
get_act_patch_attn_head_q_all_pos = _named(layer_head_vector_patch_setter, "q", _LH, "each head's queries")
get_act_patch_attn_head_k_all_pos = _named(layer_head_vector_patch_setter, "k", _LH, "each (kv) head's keys")
get_act_patch_attn_head_v_all_pos = _named(layer_head_vector_patch_setter, "v", _LH, "each (kv) head's values")
get_act_patch_attn_head_pattern_all_pos = _named(
    layer_head_pattern_patch_setter, "pattern", ("layer", "head_index"), "each head's whole pattern"
)


def _pad_heads(result: torch.Tensor, n_heads: int) -> torch.Tensor:
    """k / v results of a grouped-query model padded with zeros to n_heads (as TL does)."""
    return F.pad(result, (0, n_heads - result.shape[-1]))


def get_act_patch_attn_head_all_pos_every(model, corrupted_tokens, clean_cache, metric) -> torch.Tensor:
    """Head output, q, k, v and pattern patching, every head at all positions: [5, n_layers, n_heads]."""
    out = get_act_patch_attn_head_out_all_pos(model, corrupted_tokens, clean_cache, metric)
    q = get_act_patch_attn_head_q_all_pos(model, corrupted_tokens, clean_cache, metric)
    k = get_act_patch_attn_head_k_all_pos(model, corrupted_tokens, clean_cache, metric)
    v = get_act_patch_attn_head_v_all_pos(model, corrupted_tokens, clean_cache, metric)
    pattern = get_act_patch_attn_head_pattern_all_pos(model, corrupted_tokens, clean_cache, metric)
    return torch.stack([out, q, _pad_heads(k, q.shape[-1]), _pad_heads(v, q.shape[-1]), pattern])


def get_act_patch_attn_head_by_pos_every(model, corrupted_tokens, clean_cache, metric) -> torch.Tensor:
    """Head output, q, k, v and pattern patching, every head at each position: [5, n_layers, pos, n_heads]."""
    out = get_act_patch_attn_head_out_by_pos(model, corrupted_tokens, clean_cache, metric)
    q = get_act_patch_attn_head_q_by_pos(model, corrupted_tokens, clean_cache, metric)
    k = get_act_patch_attn_head_k_by_pos(model, corrupted_tokens, clean_cache, metric)
    v = get_act_patch_attn_head_v_by_pos(model, corrupted_tokens, clean_cache, metric)
    pattern = get_act_patch_attn_head_pattern_by_pos(model, corrupted_tokens, clean_cache, metric)
    n_heads = q.shape[-1]
    return torch.stack([out, q, _pad_heads(k, n_heads), _pad_heads(v, n_heads), pattern.transpose(1, 2)])


def get_act_patch_block_every(model, corrupted_tokens, clean_cache, metric) -> torch.Tensor:
    """resid_pre, attn_out and mlp_out patching by position: [3, n_layers, pos]."""
    return torch.stack(
        [
            get_act_patch_resid_pre(model, corrupted_tokens, clean_cache, metric),
            get_act_patch_attn_out(model, corrupted_tokens, clean_cache, metric),
            get_act_patch_mlp_out(model, corrupted_tokens, clean_cache, metric),
        ]
    )
