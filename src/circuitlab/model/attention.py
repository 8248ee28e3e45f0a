"""Multi-head (and grouped-query) attention with TransformerLens hooks and weight shapes.

Shapes: W_Q [head, d_model, d_head], W_K/W_V [kv_head, d_model, d_head], W_O [head, d_head, d_model].
When nothing hooks `hook_attn_scores` or `hook_pattern`, the pattern is never materialised and the
attention runs through `scaled_dot_product_attention` (the fast path); otherwise scores and pattern are
computed explicitly so hooks can read and replace them. When every such hook only reads (returns None and
edits nothing in place, and no backward hook needs the pattern's gradient), the output's values are still
the fast kernel's, so `model.run_with_cache(x)[0]` equals `model(x)` bit for bit; an edit switches the output
to `pattern @ v`. With autograd on, a reading hook other than the cache's may keep the live pattern and take
gradients through it: the output then carries the fast kernel's values and `pattern @ v`'s gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import HookedTransformerConfig
from .hook_points import HookPoint
from .kv_cache import HookedTransformerKeyValueCacheEntry
from .masks import alibi_bias, get_offset_position_ids


def rotary_sin_cos(
    n_ctx: int, rotary_dim: int, base: float, adjacent_pairs: bool, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """sin and cos of the rotation angles, each [pos, rotary_dim]. Frequencies base^(-2i/rotary_dim)."""
    high = torch.float64
    inv_freq = base ** (-torch.arange(rotary_dim // 2, dtype=high) / (rotary_dim / 2))  # [rotary_dim/2]
    # GPT-NeoX pairs dimension i with i + rotary_dim/2; GPT-J ("adjacent pairs") pairs 2i with 2i+1.
    inv_freq = inv_freq.repeat_interleave(2) if adjacent_pairs else inv_freq.repeat(2)  # [rotary_dim]
    angles = torch.arange(n_ctx, dtype=high)[:, None] * inv_freq[None, :]  # [pos, rotary_dim]
    return angles.sin().to(dtype), angles.cos().to(dtype)


def rotate_pairs(x: torch.Tensor, adjacent_pairs: bool) -> torch.Tensor:
    """The 90-degree rotation of each (x_i, x_j) pair: (-x_j, x_i)."""
    if adjacent_pairs:
        pairs = x.unflatten(-1, (-1, 2))  # [..., rotary_dim/2, 2]
        return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(
    x: torch.Tensor,
    sin: torch.Tensor,
    cos: torch.Tensor,
    rotary_dim: int,
    adjacent_pairs: bool,
    positions: int | torch.Tensor = 0,
) -> torch.Tensor:
    """Rotate the first `rotary_dim` features of x [batch, pos, head, d_head] by position.

    positions: the first position (an int offset: positions offset .. offset + pos - 1) or the position id of
    every token, [batch, pos] (left-padded batches, see `masks.get_offset_position_ids`).
    """
    if isinstance(positions, int):
        n_pos = x.shape[1]
        sin, cos = sin[positions : positions + n_pos, None, :], cos[positions : positions + n_pos, None, :]
    else:
        sin, cos = sin[positions][:, :, None, :], cos[positions][:, :, None, :]  # [batch, pos, 1, rotary_dim]
    x_rot, x_pass = x[..., :rotary_dim], x[..., rotary_dim:]
    x_rot = x_rot * cos + rotate_pairs(x_rot, adjacent_pairs) * sin
    return torch.cat((x_rot, x_pass), dim=-1)


def _project(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x [batch, pos, d_model] (or per head [batch, pos, head, d_model]) @ W [head, d_model, d_head] + b.

    einsum runs one GEMM on a permuted copy of W; with fewer rows than d_head (one-token steps of cached
    generation) that copy dominates, so per-head matmuls read W in place instead."""
    if x.ndim == 4:
        return torch.einsum("bphd,hde->bphe", x, W) + b
    if x.shape[0] * x.shape[1] < W.shape[-1]:
        return torch.matmul(x[:, None], W).transpose(1, 2) + b  # [batch, pos, head, d_head]
    return torch.einsum("bpd,hde->bphe", x, W) + b


class Attention(nn.Module):
    """Attention of one layer. TransformerLens's signature: `Attention(cfg, attn_type="global", layer_id=None)`,
    cfg a config or a dict; attn_type None takes the layer's type from `cfg.attn_types`."""

    def __init__(
        self, cfg: HookedTransformerConfig | dict, attn_type: str | None = None, layer_id: int | None = None
    ) -> None:
        super().__init__()
        cfg = HookedTransformerConfig.unwrap(cfg)
        self.cfg = cfg
        self.layer = layer_id
        if attn_type is None:
            attn_type = cfg.attn_types[layer_id] if cfg.attn_types is not None and layer_id is not None else "global"
        if attn_type not in ("global", "local"):
            raise ValueError(f"attn_type={attn_type!r} is invalid: expected 'global' or 'local'")
        if attn_type == "local" and not (isinstance(cfg.window_size, int) and cfg.window_size > 0):
            raise ValueError("attn_type='local' needs cfg.window_size, a positive integer")
        self.attn_type = attn_type
        h, kv, d, e = cfg.n_heads, cfg.n_kv_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.empty(h, d, e, dtype=cfg.dtype))
        self.W_O = nn.Parameter(torch.empty(h, e, d, dtype=cfg.dtype))
        self.b_Q = nn.Parameter(torch.zeros(h, e, dtype=cfg.dtype))
        self.b_O = nn.Parameter(torch.zeros(d, dtype=cfg.dtype))
        # Grouped-query attention keeps kv_head < head keys and values (TransformerLens: _W_K, _W_V).
        prefix = "_" if cfg.n_key_value_heads is not None else ""
        for name in ("W_K", "W_V"):
            self.register_parameter(prefix + name, nn.Parameter(torch.empty(kv, d, e, dtype=cfg.dtype)))
        for name in ("b_K", "b_V"):
            self.register_parameter(prefix + name, nn.Parameter(torch.zeros(kv, e, dtype=cfg.dtype)))
        self.kv_prefix = prefix
        self.kv_group = h // kv  # query heads per stored key/value head
        # Ungrouped (TransformerLens's ungroup_grouped_query_attention), keys and values are computed per query
        # head, so their hooks and the key/value cache have n_heads heads.
        self.group = 1 if cfg.ungroup_grouped_query_attention else self.kv_group
        self.n_kv_inputs = h if cfg.ungroup_grouped_query_attention else kv
        # A local layer (GPT-Neo, Mistral) lets query q see only keys q - window_size < k <= q.
        self.window = cfg.window_size if attn_type == "local" else None

        self.hook_q = HookPoint()  # [batch, pos, head, d_head]
        self.hook_k = HookPoint()  # [batch, pos, kv_head, d_head]
        self.hook_v = HookPoint()  # [batch, pos, kv_head, d_head]
        self.hook_z = HookPoint()  # [batch, pos, head, d_head]
        self.hook_attn_scores = HookPoint()  # [batch, head, query_pos, key_pos]
        self.hook_pattern = HookPoint()  # [batch, head, query_pos, key_pos]
        self.hook_result = HookPoint()  # [batch, pos, head, d_model], fires when use_attn_result
        if cfg.positional_embedding_type == "rotary":
            self.hook_rot_q = HookPoint()  # [batch, pos, head, d_head]
            self.hook_rot_k = HookPoint()  # [batch, pos, kv_head, d_head]
            sin, cos = rotary_sin_cos(cfg.n_ctx, cfg.rotary_dim, cfg.rotary_base, cfg.rotary_adjacent_pairs, cfg.dtype)
            self.register_buffer("rotary_sin", sin, persistent=False)
            self.register_buffer("rotary_cos", cos, persistent=False)

    # Keys and values as [kv_head, ...]; the public W_K / W_V of a GQA layer repeat them per query head.
    @property
    def kv_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        p = self.kv_prefix
        return (
            getattr(self, p + "W_K"),
            getattr(self, p + "b_K"),
            getattr(self, p + "W_V"),
            getattr(self, p + "b_V"),
        )

    def _rotate(self, x: torch.Tensor, offset: int, attention_mask: torch.Tensor | None) -> torch.Tensor:
        cfg = self.cfg
        positions: int | torch.Tensor = offset
        if attention_mask is not None:  # positions count real tokens only (left padding)
            positions = get_offset_position_ids(offset, attention_mask).to(x.device)
        return apply_rotary(x, self.rotary_sin, self.rotary_cos, cfg.rotary_dim, cfg.rotary_adjacent_pairs, positions)

    def needs_pattern(self) -> bool:
        """True when a hook reads or edits scores or pattern, or the config asks for the explicit path."""
        return not self.cfg.fast_attention or self.hook_attn_scores.has_hooks() or self.hook_pattern.has_hooks()

    def forward(
        self,
        query_input: torch.Tensor,
        key_input: torch.Tensor,
        value_input: torch.Tensor,
        past_kv_cache_entry: HookedTransformerKeyValueCacheEntry | None = None,
        additive_attention_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Inputs [batch, pos, d_model] (or per head, [batch, pos, head, d_model]); returns [batch, pos, d_model].

        past_kv_cache_entry: this layer's cached keys/values; the inputs are then only the new positions.
        additive_attention_mask: added to the scores, broadcast to [batch, head, query_pos, key_pos].
        attention_mask: [batch, key_pos] (cached plus new positions), 0 at padding that no query may read.
        """
        W_K, b_K, W_V, b_V = self.kv_weights
        if self.group != self.kv_group:  # ungrouped: key/value weights repeated per query head
            W_K, b_K, W_V, b_V = (t.repeat_interleave(self.kv_group, dim=0) for t in (W_K, b_K, W_V, b_V))
        q = self.hook_q(_project(query_input, self.W_Q, self.b_Q))  # [batch, pos, head, d_head]
        k = self.hook_k(_project(key_input, W_K, b_K))  # [batch, pos, kv_head, d_head]
        v = self.hook_v(_project(value_input, W_V, b_V))  # [batch, pos, kv_head, d_head]
        offset = 0
        if past_kv_cache_entry is not None:  # keys/values of earlier positions, cached before rotary
            offset = past_kv_cache_entry.past_keys.shape[1]
            k, v = past_kv_cache_entry.append(k, v)  # [batch, offset + pos, kv_head, d_head]
        if self.cfg.positional_embedding_type == "rotary":
            q = self.hook_rot_q(self._rotate(q, offset, attention_mask))
            k = self.hook_rot_k(self._rotate(k, 0, attention_mask))
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [batch, head, pos, d_head]
        bias = self._score_bias(q.shape[-2], k.shape[-2], additive_attention_mask, q)
        blocked = self._masked(q.shape[-2], k.shape[-2], attention_mask, q.device)
        padded = attention_mask is not None
        z, grad_path = self._explicit(q, k, v, bias, blocked, padded) if self.needs_pattern() else (None, None)
        if z is None:  # no pattern hooks, or hooks that only read: the plain forward's kernel and numbers
            z = self._fast(q, k, v, bias, blocked, padded)
            if grad_path is not None:  # the fast kernel's values (exactly: x - x is 0), pattern @ v's gradients
                z = z.detach() + (grad_path - grad_path.detach())
        z = self.hook_z(z.transpose(1, 2))  # [batch, pos, head, d_head]
        if self.cfg.use_attn_result:
            result = self.hook_result(torch.einsum("bphe,hed->bphd", z, self.W_O))  # [batch, pos, head, d_model]
            return result.sum(dim=2) + self.b_O
        return z.flatten(-2) @ self.W_O.flatten(0, 1) + self.b_O  # (head d_head) contracted at once

    def _score_bias(
        self, n_q: int, n_k: int, additive_attention_mask: torch.Tensor | None, like: torch.Tensor
    ) -> torch.Tensor | None:
        """What is added to the scaled scores (ALiBi, an additive mask), broadcastable to [batch, head, q, k]."""
        bias = None
        if self.cfg.positional_embedding_type == "alibi":
            bias = alibi_bias(self.cfg.n_heads, n_q, n_k, like.device, like.dtype)  # [head, query_pos, key_pos]
        if additive_attention_mask is not None:
            bias = additive_attention_mask if bias is None else bias + additive_attention_mask
        return bias

    def _masked(
        self, n_q: int, n_k: int, attention_mask: torch.Tensor | None, device: torch.device
    ) -> torch.Tensor | None:
        """[query_pos, key_pos] or [batch, 1, query_pos, key_pos]: True where a query may not read a key."""
        blocked = self._blocked(n_q, n_k, device)
        if attention_mask is not None:
            if attention_mask.shape[-1] != n_k:
                raise ValueError(
                    f"attention_mask covers {attention_mask.shape[-1]} positions but attention sees {n_k} keys "
                    "(with a key/value cache the mask must cover the cached and the new positions)"
                )
            padding = ~attention_mask.to(device).bool()[:, None, None, :]  # [batch, 1, 1, key_pos]
            blocked = padding if blocked is None else blocked | padding
        return blocked

    @property
    def mask(self) -> torch.Tensor:
        """TransformerLens's `attn.mask`: [n_ctx, n_ctx] bool, True where a query may attend (lower triangle,
        cut to the window on a local layer; all True without a causal mask). Built on demand, not stored."""
        n = self.cfg.n_ctx
        blocked = self._blocked(n, n, self.W_Q.device)
        return torch.ones(n, n, dtype=torch.bool, device=self.W_Q.device) if blocked is None else ~blocked

    @property
    def IGNORE(self) -> torch.Tensor:
        """TransformerLens's `attn.IGNORE`: the score written where attention is masked (-inf)."""
        return torch.tensor(float("-inf"), device=self.W_Q.device)

    def _blocked(self, n_q: int, n_k: int, device: torch.device) -> torch.Tensor | None:
        """[query_pos, key_pos] True where attention is forbidden (the future; beyond a local window).

        Queries are the last n_q of the n_k positions (with a key/value cache the first ones are cached)."""
        if not self.cfg.causal:
            return None
        offset = torch.arange(n_q, device=device)[:, None] + (n_k - n_q) - torch.arange(n_k, device=device)[None, :]
        blocked = offset < 0  # query minus key position
        return blocked | (offset >= self.window) if self.window is not None else blocked

    def _fast(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        bias: torch.Tensor | None,
        blocked: torch.Tensor | None,
        padded: bool,
    ) -> torch.Tensor:
        scale, gqa = 1.0 / self.cfg.attn_scale, self.group > 1
        plain_causal = self.cfg.causal and self.window is None and q.shape[-2] == k.shape[-2]
        if bias is None and not padded and (plain_causal or not self.cfg.causal):
            return F.scaled_dot_product_attention(q, k, v, is_causal=self.cfg.causal, scale=scale, enable_gqa=gqa)
        mask = None if blocked is None else ~blocked  # SDPA's boolean mask marks what may be read
        if bias is not None:  # a float mask: the bias where allowed, -inf elsewhere
            mask = bias if blocked is None else torch.where(blocked, float("-inf"), bias)
        z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)
        return z.nan_to_num(0.0) if padded else z  # a query that may read nothing (a leading pad) gets 0

    def _explicit(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        bias: torch.Tensor | None,
        blocked: torch.Tensor | None,
        padded: bool,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(pattern @ v, None), or (None, grad path) when the fast kernel may give the output: the config allows
        it and the hooks on scores and pattern only read them (no replacement, no in-place edit, no backward
        hook). The grad path is pattern @ v where a reading hook (not the cache's) may take gradients through
        the pattern it saw, else None."""
        if self.group > 1:  # query head i reads key/value head i // group
            k, v = k.repeat_interleave(self.group, dim=1), v.repeat_interleave(self.group, dim=1)
        # In place on the fresh product: one [batch, head, query_pos, key_pos] tensor instead of three.
        scores = torch.matmul(q, k.transpose(-1, -2)).div_(self.cfg.attn_scale)
        if bias is not None:
            scores = scores.add_(bias)
        if blocked is not None:
            scores = scores.masked_fill_(blocked, float("-inf"))
        version = scores._version
        hooked_scores = self.hook_attn_scores(scores)
        pattern = torch.softmax(hooked_scores, dim=-1)
        if padded:  # a query that may read nothing (a leading pad) gets a zero pattern, as in TransformerLens
            pattern = pattern.nan_to_num(0.0)
        pattern_version = pattern._version
        hooked_pattern = self.hook_pattern(pattern)
        read_only = (
            self.cfg.fast_attention
            and hooked_scores is scores
            and scores._version == version
            and hooked_pattern is pattern
            and pattern._version == pattern_version
            and not (self.hook_attn_scores.bwd_hooks or self.hook_pattern.bwd_hooks)
        )
        if not read_only:
            return hooked_pattern @ v, None  # [batch, head, query_pos, d_head]
        # A reading hook may keep the live pattern to take gradients through it (attribution, EAP): then the
        # gradients must come from pattern @ v (the caching hooks keep detached copies and need none).
        kept = not (self.hook_attn_scores.only_detaching_hooks() and self.hook_pattern.only_detaching_hooks())
        return None, (hooked_pattern @ v if kept and torch.is_grad_enabled() and pattern.requires_grad else None)
