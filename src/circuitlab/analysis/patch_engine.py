"""Exact activation patching at its compute floor: each patched cell gets only the work it really needs.

Patching an activation of layer l whose first differing position is p (the first position where the
patched activation differs from the run patched into, the "base" run) changes nothing before layer l
and, with causal attention, nothing at positions < p. So for every cell the engine
- skips it when the patched activation equals the base one exactly (its value is the base metric), or
  when the metric reads only positions < p;
- at layer l reuses the base run's activations upstream of the patch site (a head-output patch recomputes
  no attention, an MLP-output patch no block at all) and recomputes downstream only at the positions the
  patch changes; a residual-stream patch recomputes queries, keys and values only where it changed;
- at layers > l runs blocks on positions >= p only, their attention reading the base run's keys and
  values for positions < p (a key/value prefix per layer, shared by all variants);
- in the last block computes queries, attention output, MLP and unembedding only at the positions the
  metric reads (`PositionMetric`, or a per-run metric whose read positions were probed).
Cells with the same first position run together as one batch [variant * batch, pos >= p, d_model], each
variant joining it at its own layer. The math is the model's own (its norms, MLPs and weights); only the
attention of a position suffix over cached prefix keys is written here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..model.attention import _project, rotate_pairs
from ..model.masks import alibi_bias
from ..model.names import get_act_name
from . import metrics
from .metrics import Metric, PositionMetric, select_pos

if TYPE_CHECKING:
    from ..model.transformer import HookedTransformer

ATTN_SITES = ("q", "k", "v", "pattern", "z", "result")
POSITIONWISE = ("q", "pattern", "z", "result", "attn_out", "resid_mid", "mlp_out")  # change only their own rows
SUPPORTED_POS_EMBED = ("standard", "none", "rotary", "alibi", "shortformer")


@dataclass
class Cell:
    """One patched run: activation `act` of `layer` replaced by `patched(base activation)` (the full
    tensor, [batch, ...]); `index` is its place in the list of cells."""

    index: int
    layer: int
    patched: Callable[[torch.Tensor], torch.Tensor]
    start: int = 0


def supports(model: HookedTransformer) -> bool:
    """Whether the engine applies: no hooks live on the model (they must fire, so the hook path runs) and a
    positional scheme and key/value layout it knows."""
    cfg = model.cfg
    if cfg.positional_embedding_type not in SUPPORTED_POS_EMBED or getattr(cfg, "ungroup_grouped_query_attention", 0):
        return False
    return not any(hp.has_hooks() for hp in model.hook_dict.values())


def pos_dim(act: str) -> int:
    """The position axis of `act` [batch, ...]: the query axis for patterns [batch, head, query, key]."""
    return 2 if act == "pattern" else 1


# ---- the metric, read at the positions it needs --------------------------------------------------
class Reader:
    """The metric of variants from their final residual stream at the positions the metric reads."""

    def __init__(self, model: HookedTransformer, metric: Metric, base_final: torch.Tensor) -> None:
        self.model, self.metric, self.base_final = model, metric, base_final  # [batch, pos, d_model]
        n_pos = base_final.shape[1]
        self.row_index: int | torch.Tensor | None = None
        if isinstance(metric, PositionMetric):
            pos = torch.as_tensor(metric.pos).long().cpu()
            pos = torch.where(pos < 0, pos + n_pos, pos)
            self.positions: list[int] | None = sorted(set(pos.flatten().tolist()))
            lookup = {p: i for i, p in enumerate(self.positions)}
            self.row_index = (
                lookup[int(pos)] if pos.ndim == 0 else torch.tensor([lookup[int(p)] for p in pos], device=model.device)
            )
        else:
            self.positions = getattr(metric, "read_positions", None)  # a probed per-run metric (see metrics.py)
        full = self._logits(base_final)  # [batch, pos, vocab], as the model's own forward computes them
        self.base_value = torch.as_tensor(metric(full)).reshape(())  # what metric(model(tokens)) gives
        self.base_logits = full if self.positions is None else full[:, self.positions]

    def _logits(self, resid: torch.Tensor) -> torch.Tensor:
        model = self.model
        if model.cfg.normalization_type is not None:
            resid = model.ln_final(resid)
        return model.unembed(resid)

    def reads_before(self, start: int) -> bool:
        """True when the metric reads only positions < start: a patch there cannot change it."""
        return self.positions is not None and max(self.positions) < start

    def out_rel(self, start: int) -> torch.Tensor | None:
        """Positions (relative to `start`) the last block must compute; None: all."""
        if self.positions is None:
            return None
        return torch.tensor([p - start for p in self.positions if p >= start], device=self.model.device)

    def __call__(self, final: torch.Tensor, start: int, n_var: int) -> torch.Tensor:
        """final: [variant * batch, k, d_model] at `out_rel(start)` -> [variant]."""
        n_seq = self.base_final.shape[0]
        new = self._logits(final).view(n_var, n_seq, *final.shape[1:-1], -1)  # [variant, batch, k, vocab]
        n_before = start if self.positions is None else sum(p < start for p in self.positions)
        before = self.base_logits[:, :n_before].unsqueeze(0).expand(n_var, -1, -1, -1)
        logits = torch.cat([before, new], dim=2) if n_before else new
        if isinstance(self.metric, PositionMetric):
            values = self.metric.reduce(select_pos(logits, self.row_index))
        elif self.positions is not None:
            values = self.metric.evaluate(logits, self.positions)
        else:
            values = self.metric(logits)
        if values.shape != (logits.shape[0],):
            raise ValueError(
                f"the metric returned shape {tuple(values.shape)} for logits of {logits.shape[0]} patch variants: "
                "a metric must map logits [..., batch, pos, vocab] to [...] (e.g. a mean over the batch)"
            )
        return values


# ---- the base run and its caches -----------------------------------------------------------------
def _qk_name(letter: str, layer: int, rotary: bool) -> str:
    return get_act_name(("rot_" + letter) if rotary else letter, layer)


def base_names(model: HookedTransformer, act: str) -> list[str]:
    """Activations of the base run the engine reads (keys/values and streams at every layer, plus the
    site's neighbours)."""
    cfg = model.cfg
    rotary = cfg.positional_embedding_type == "rotary"
    names = []
    for l in range(cfg.n_layers):
        names += [get_act_name("resid_pre", l), get_act_name("resid_post", l), _qk_name("k", l, rotary)]
        names += [get_act_name("v", l)]
        if act in ("resid_pre", "resid_post", "k"):
            names.append(_qk_name("q", l, rotary))
        if act == "mlp_out":
            names.append(get_act_name("attn_out" if cfg.parallel_attn_mlp else "resid_mid", l))
        if act in (*ATTN_SITES, "attn_out") and cfg.parallel_attn_mlp:
            names.append(get_act_name("mlp_out", l))
    return names


class Engine:
    """Patched runs of one base run: `run(cells)` -> the metric of each cell."""

    def __init__(self, model: HookedTransformer, base_tokens: torch.Tensor, act: str, metric: Metric) -> None:
        self.model, self.cfg, self.act = model, model.cfg, act
        names = sorted(set(base_names(model, act) + [get_act_name(act, l) for l in range(model.cfg.n_layers)]))
        if act == "resid_mid" and (model.cfg.attn_only or model.cfg.parallel_attn_mlp):
            raise ValueError("resid_mid does not exist in attention-only or parallel-attention models")
        _, self.cache = model.run_with_cache(base_tokens, names_filter=names, return_cache_object=False)
        if act == "v":  # a second run: caching the pattern takes the explicit attention path (other last bits)
            patterns = [get_act_name("pattern", l) for l in range(model.cfg.n_layers)]
            self.cache.update(model.run_with_cache(base_tokens, names_filter=patterns, return_cache_object=False)[1])
        self.n_seq, self.n_pos = base_tokens.shape
        self.rotary = self.cfg.positional_embedding_type == "rotary"
        final = self.cache[get_act_name("resid_post", self.cfg.n_layers - 1)]
        if not metrics.is_batched(metric):  # a metric of one run's logits: wrapped, its positions probed
            final_ln = model.ln_final if model.cfg.normalization_type is not None else (lambda x: x)
            metric = metrics.adapt(metric, model.unembed(final_ln(final)))
        self.reader = Reader(model, metric, final)
        self.base_value = self.reader.base_value

    def base(self, short: str, layer: int) -> torch.Tensor:
        if short in ("q", "k"):
            return self.cache[_qk_name(short, layer, self.rotary)]
        return self.cache[get_act_name(short, layer)]

    def site(self, layer: int) -> torch.Tensor:
        """The base run's activation `act` of `layer` [batch, ...]."""
        return self.cache[get_act_name(self.act, layer)]

    def _tile(self, x: torch.Tensor, n_var: int) -> torch.Tensor:
        """[batch, ...] -> [variant * batch, ...] (variant-major)."""
        return x.repeat(n_var, *([1] * (x.ndim - 1)))

    # -- planning
    def plan(self, cells: Sequence[Cell]) -> tuple[list[Cell], list[int]]:
        """(cells that need a run, with `start` set; indices of cells whose value is the base metric)."""
        run, skipped = [], []
        dim = pos_dim(self.act)
        for cell in cells:
            base = self.site(cell.layer)
            differs = cell.patched(base) != base
            rows = differs.transpose(0, dim).flatten(1).any(1).nonzero()  # positions where anything differs
            if len(rows) == 0:
                skipped.append(cell.index)
                continue
            cell.start = int(rows[0]) if self.cfg.causal else 0
            if self.reader.reads_before(cell.start):
                skipped.append(cell.index)
            else:
                run.append(cell)
        return run, skipped

    def join_layer(self, cell: Cell) -> int:
        return cell.layer + 1 if self.act == "resid_post" else cell.layer

    # -- one batch of cells sharing `start`
    def run_chunk(self, cells: Sequence[Cell], start: int) -> tuple[list[int], torch.Tensor]:
        """(cell indices, the metric [variant] of each) for `cells`, all with first differing position `start`."""
        n_layers = self.cfg.n_layers
        out = self.reader.out_rel(start)
        x, order = None, []
        for j in range(min(self.join_layer(c) for c in cells), n_layers + 1):
            final = j == n_layers
            parts = []
            if x is not None and not final:
                parts.append(self.block(j, x, start, out if j == n_layers - 1 else None))
            elif x is not None:
                parts.append(x)
            joining = [c for c in cells if self.join_layer(c) == j]
            if joining:
                dim, m = pos_dim(self.act), self.n_pos - start
                vals = torch.stack([c.patched(self.site(c.layer)).narrow(dim, start, m) for c in joining])
                if final:  # resid_post of the last layer: the final stream itself
                    vals = vals.flatten(0, 1)
                    parts.append(vals if out is None else vals[:, out])
                else:
                    parts.append(self.join(j, vals, start, out if j == n_layers - 1 else None))
                order += [c.index for c in joining]
            x = torch.cat(parts) if len(parts) > 1 else parts[0]
        return order, self.reader(x, start, len(order))

    # -- attention of query rows over the base prefix plus new keys
    def _rotate(self, layer: int, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Rotary rotation of x [N, r, head, d_head] at absolute `positions` [r]."""
        if not self.rotary:
            return x
        attn, cfg = self.model.blocks[layer].attn, self.cfg
        sin, cos = attn.rotary_sin[positions][:, None, :], attn.rotary_cos[positions][:, None, :]
        x_rot, x_pass = x[..., : cfg.rotary_dim], x[..., cfg.rotary_dim :]
        x_rot = x_rot * cos + rotate_pairs(x_rot, cfg.rotary_adjacent_pairs) * sin
        return torch.cat((x_rot, x_pass), dim=-1)

    def _pos(self, h: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """A shortformer model's query / key inputs: the normalised stream plus the positional embedding."""
        if self.cfg.positional_embedding_type != "shortformer":
            return h
        return h + self.model.pos_embed.W_pos[positions]

    def _blocked(self, layer: int, q_pos: torch.Tensor, n_keys: int) -> torch.Tensor | None:
        """[r, pos] True where query at q_pos may not read a key (the future; beyond a local window)."""
        if not self.cfg.causal:
            return None
        window = self.model.blocks[layer].attn.window
        offset = q_pos[:, None] - torch.arange(n_keys, device=q_pos.device)[None, :]
        return offset < 0 if window is None else (offset < 0) | (offset >= window)

    def _attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_pos: torch.Tensor):
        """z [N, r, head, d_head] of queries q [N, r, head, d_head] at positions q_pos over all keys and values
        [N, pos, kv_head, d_head], on the fused kernel (the pattern is not needed)."""
        attn, n_keys = self.model.blocks[layer].attn, k.shape[1]
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [N, head, pos, d_head]
        blocked = self._blocked(layer, q_pos, n_keys)
        mask = None if blocked is None else ~blocked
        if self.cfg.positional_embedding_type == "alibi":
            bias = alibi_bias(self.cfg.n_heads, n_keys, n_keys, q.device, q.dtype)[:, q_pos]  # [head, r, pos]
            mask = bias if blocked is None else bias.masked_fill(blocked, float("-inf"))
        z = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, scale=1.0 / self.cfg.attn_scale, enable_gqa=attn.group > 1
        )
        return z.transpose(1, 2)

    def _mix(self, layer: int, pattern: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """pattern [N, head, r, pos] @ v [N, pos, kv_head, d_head] -> z [N, r, head, d_head]."""
        group = self.model.blocks[layer].attn.group
        v = v.transpose(1, 2)
        if group > 1:
            v = v.repeat_interleave(group, dim=1)
        return (pattern @ v).transpose(1, 2)

    def _attn_out(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        attn = self.model.blocks[layer].attn
        return z.flatten(-2) @ attn.W_O.flatten(0, 1) + attn.b_O

    def _post_attention(self, layer: int, x: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
        """resid_post from resid_pre x and the attention output (both at the same rows)."""
        blk, cfg = self.model.blocks[layer], self.cfg
        if cfg.attn_only:
            return x + attn_out
        if cfg.parallel_attn_mlp:
            return x + attn_out + blk.mlp(blk.ln2(x))
        mid = x + attn_out
        return mid + blk.mlp(blk.ln2(mid))

    def block(
        self, layer: int, x: torch.Tensor, start: int, out: torch.Tensor | None, fresh: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Block `layer` on x [N, m, d_model] (resid_pre at positions start..) -> resid_post at rows `out`
        (relative; None: all). `fresh`: the only rows where x differs from the base run (their q/k/v are
        recomputed, the others read from the base run); None: all rows."""
        blk, attn = self.model.blocks[layer], self.model.blocks[layer].attn
        n, m = x.shape[0], x.shape[1]
        n_var = n // self.n_seq
        sel = torch.arange(m, device=x.device) if out is None else out
        W_K, b_K, W_V, b_V = attn.kv_weights
        if fresh is None:
            h = blk.ln1(x)
            rows = start + torch.arange(m, device=x.device)
            q = self._rotate(layer, _project(self._pos(h[:, sel], start + sel), attn.W_Q, attn.b_Q), start + sel)
            k = self._rotate(layer, _project(self._pos(h, rows), W_K, b_K), rows)
            v = _project(h, W_V, b_V)
        else:
            h = blk.ln1(x[:, fresh])
            hp = self._pos(h, start + fresh)
            q = self._tile(self.base("q", layer)[:, start:], n_var)
            k = self._tile(self.base("k", layer)[:, start:], n_var)
            v = self._tile(self.base("v", layer)[:, start:], n_var)
            q[:, fresh] = self._rotate(layer, _project(hp, attn.W_Q, attn.b_Q), start + fresh)
            k[:, fresh] = self._rotate(layer, _project(hp, W_K, b_K), start + fresh)
            v[:, fresh] = _project(h, W_V, b_V)
            q = q[:, sel]
        if start:
            k = torch.cat([self._tile(self.base("k", layer)[:, :start], n_var), k], dim=1)
            v = torch.cat([self._tile(self.base("v", layer)[:, :start], n_var), v], dim=1)
        z = self._attend(layer, q, k, v, start + sel)
        return self._post_attention(layer, x[:, sel], self._attn_out(layer, z))

    def join(self, layer: int, vals: torch.Tensor, start: int, out: torch.Tensor | None) -> torch.Tensor:
        """resid_post of `layer` [variant * batch, k, d_model] at rows `out` for variants whose activation
        `act` of this layer is `vals` [variant, batch, ...] (positions start.. only)."""
        act, cfg = self.act, self.cfg
        n_var, m = vals.shape[0], self.n_pos - start
        dim = pos_dim(act)
        site = self.base("resid_pre", layer) if act == "resid_post" else self.site(layer)  # post(l) = pre(l+1)
        base_val = site.narrow(dim, start, m)
        differs = (vals != base_val).transpose(0, dim + 1).flatten(1).any(1)  # [m]
        vals = vals.flatten(0, 1)  # [N, ...]
        if act in ("resid_pre", "resid_post"):
            fresh = differs.nonzero().flatten()
            return self.block(layer, vals, start, out, fresh=None if len(fresh) == m else fresh)
        sel = torch.arange(m, device=vals.device) if out is None else out
        rows = sel[differs[sel]] if act in POSITIONWISE else sel  # rows whose resid_post changes
        if len(rows) == 0:
            return self._tile(self.base("resid_post", layer)[:, start:][:, sel], n_var)
        x = self._tile(self.base("resid_pre", layer)[:, start:], n_var)[:, rows]
        blk = self.model.blocks[layer]
        absolute = start + rows
        if act in ("resid_mid", "mlp_out"):
            if act == "resid_mid":
                mid = vals[:, rows]
                new = mid + blk.mlp(blk.ln2(mid))
            elif cfg.parallel_attn_mlp:
                new = x + self._tile(self.base("attn_out", layer)[:, start:], n_var)[:, rows] + vals[:, rows]
            else:
                new = self._tile(self.base("resid_mid", layer)[:, start:], n_var)[:, rows] + vals[:, rows]
        else:
            if act == "attn_out":
                attn_out = vals[:, rows]
            elif act == "result":
                attn_out = vals[:, rows].sum(dim=2) + blk.attn.b_O
            else:
                attn_out = self._attn_out(layer, self._head_z(layer, act, vals, start, rows, absolute, n_var))
            if cfg.parallel_attn_mlp:
                mlp_out = self._tile(self.base("mlp_out", layer)[:, start:], n_var)[:, rows]
                new = x + attn_out + mlp_out
            else:
                new = self._post_attention(layer, x, attn_out)
        if len(rows) == len(sel):  # rows is a subset of sel
            return new
        post = self._tile(self.base("resid_post", layer)[:, start:], n_var)
        post[:, rows] = new
        return post[:, sel]

    def _head_z(
        self, layer: int, act: str, vals: torch.Tensor, start: int, rows: torch.Tensor, absolute: torch.Tensor, n_var
    ) -> torch.Tensor:
        """z [N, r, head, d_head] at `rows` when q, k, v, the pattern or z itself is `vals` (positions start..)."""
        if act == "z":
            return vals[:, rows]
        tile = self._tile
        if act == "q":
            q = self._rotate(layer, vals[:, rows], absolute)
            return self._attend(
                layer, q, tile(self.base("k", layer), n_var), tile(self.base("v", layer), n_var), absolute
            )
        if act == "k":
            k_new = self._rotate(layer, vals, start + torch.arange(vals.shape[1], device=vals.device))
            k = torch.cat([tile(self.base("k", layer)[:, :start], n_var), k_new], dim=1)
            q = tile(self.base("q", layer)[:, start:], n_var)[:, rows]
            return self._attend(layer, q, k, tile(self.base("v", layer), n_var), absolute)
        if act == "v":
            v = torch.cat([tile(self.base("v", layer)[:, :start], n_var), vals], dim=1)
            pattern = tile(self.base("pattern", layer)[:, :, start:], n_var)[:, :, rows]
            return self._mix(layer, pattern, v)
        if act == "pattern":  # vals [N, head, query rows start.., key]
            return self._mix(layer, vals[:, :, rows], tile(self.base("v", layer), n_var))
        raise ValueError(f"act={act!r} is not an attention site")


def sweep(
    model: HookedTransformer,
    base_tokens: torch.Tensor,
    act: str,
    cells: Sequence[Cell],
    metric: Metric,
    chunk: int,
    bar_factory: Callable[[int], object],
) -> torch.Tensor:
    """The metric of every cell [len(cells)] (float64), cells batched by first differing position in chunks
    of at most `chunk` variants; `bar_factory(n_chunks)` gives a progress bar (a tqdm)."""
    with torch.no_grad():
        engine = Engine(model, base_tokens, act, metric)
        todo, _ = engine.plan(cells)
        out = torch.full((len(cells),), float(engine.base_value), dtype=torch.float64)
        groups: dict[int, list[Cell]] = {}
        for cell in sorted(todo, key=lambda c: (c.start, engine.join_layer(c))):
            groups.setdefault(cell.start, []).append(cell)
        jobs = [(s, g[i : i + chunk]) for s, g in groups.items() for i in range(0, len(g), chunk)]
        with bar_factory(len(jobs)) as bar:
            for start, job in jobs:
                order, values = engine.run_chunk(job, start)
                out[torch.tensor(order)] = values.double().cpu()
                bar.update()
    return out
