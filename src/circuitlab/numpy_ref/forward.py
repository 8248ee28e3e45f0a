"""A transformer forward pass in plain NumPy, short enough to read in one sitting.

`forward(params, cfg, tokens)` returns the logits and a dict of activations under the same hook names
as the torch model. `params` uses the torch model's state-dict names (`blocks.0.attn.W_Q`, ...), and
`cfg` is a `HookedTransformerConfig` or its `to_dict()`. No loop runs over batch, positions or heads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np

Params = Mapping[str, np.ndarray]
Acts = dict[str, np.ndarray]


# ---- activation functions ------------------------------------------------------------------------
def erf(x: np.ndarray) -> np.ndarray:
    """Error function to double precision: erf(x) = 2/sqrt(pi) e^{-x^2} sum_n 2^n x^{2n+1} / (2n+1)!!.

    Every term is positive, so there is no cancellation; |x| is clipped at 6, where erf is 1 to 1e-17.
    """
    a = np.minimum(np.abs(x), 6.0)
    term = a.copy()
    total = a.copy()
    for n in range(1, 160):  # a loop over series terms, not over elements
        term = term * 2 * a * a / (2 * n + 1)
        total = total + term
    return np.sign(x) * 2 / np.sqrt(np.pi) * np.exp(-a * a) * total


def gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def gelu_new(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def gelu_fast(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(x * 0.7978845608 * (1 + 0.044715 * x * x)))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1 + np.exp(-x))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))  # -inf entries become exactly 0
    return e / e.sum(axis=axis, keepdims=True)


def solu(x: np.ndarray) -> np.ndarray:
    return x * softmax(x)


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": relu,
    "gelu": gelu,
    "gelu_new": gelu_new,
    "gelu_fast": gelu_fast,
    "gelu_pytorch_tanh": gelu_new,  # torch's tanh approximation is GPT-2's formula
    "silu": silu,
    "solu": solu,
    "solu_ln": solu,
}


# ---- normalisation ---------------------------------------------------------------------------
def normalize(x: np.ndarray, prefix: str, params: Params, cfg: Any, acts: Acts, kind: str | None = None) -> np.ndarray:
    """LayerNorm / RMSNorm (with or without weights) over the last axis, recording scale and output."""
    kind = cfg.normalization_type if kind is None else kind
    if kind is None:
        return x
    if kind.startswith("LN"):
        x = x - x.mean(-1, keepdims=True)
    scale = np.sqrt((x**2).mean(-1, keepdims=True) + cfg.eps)
    acts[f"{prefix}.hook_scale"] = scale
    x = x / scale
    if kind == "LN":
        x = x * params[f"{prefix}.w"] + params[f"{prefix}.b"]
    acts[f"{prefix}.hook_normalized"] = x  # RMSNorm records it before its weight
    return x * params[f"{prefix}.w"] if kind == "RMS" else x


# ---- attention -------------------------------------------------------------------------------
def rotary(x: np.ndarray, cfg: Any) -> np.ndarray:
    """Rotate feature pairs of x [batch, pos, head, d_head] by angle pos * base^(-2i / rotary_dim)."""
    r = cfg.rotary_dim
    inv_freq = cfg.rotary_base ** (-np.arange(r // 2) / (r / 2))  # [r/2]
    angles = np.arange(x.shape[1])[:, None] * inv_freq[None, :]  # [pos, r/2]
    sin, cos = np.sin(angles)[:, None, :], np.cos(angles)[:, None, :]  # [pos, 1, r/2]
    if cfg.rotary_adjacent_pairs:  # GPT-J: pairs (2i, 2i+1)
        a, b = x[..., 0:r:2], x[..., 1:r:2]
        rotated = np.stack([a * cos - b * sin, b * cos + a * sin], axis=-1).reshape(*x.shape[:-1], r)
    else:  # GPT-NeoX: pairs (i, i + r/2)
        a, b = x[..., : r // 2], x[..., r // 2 : r]
        rotated = np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)
    return np.concatenate([rotated, x[..., r:]], axis=-1)


def alibi(n_heads: int, n_pos: int) -> np.ndarray:
    """ALiBi bias [head, query, key]: m_h * min(key - query, 0), m_h = 2^(-8 (h + 1) / n_heads)."""
    slopes = 2.0 ** (-8.0 * (np.arange(n_heads) + 1) / n_heads)
    distance = np.minimum(np.arange(n_pos)[None, :] - np.arange(n_pos)[:, None], 0)
    return slopes[:, None, None] * distance[None]


def attention(
    x: np.ndarray, prefix: str, params: Params, cfg: Any, acts: Acts, layer: int = 0, qk_pos: np.ndarray | None = None
) -> np.ndarray:
    """Multi-head attention on x [batch, pos, d_model]; grouped-query when kv heads < heads.

    qk_pos: a shortformer's positional embedding, added to the query and key inputs only."""
    kv = "_" if cfg.n_key_value_heads is not None else ""
    qk_in = x if qk_pos is None else x + qk_pos
    W_K, b_K = params[f"{prefix}.{kv}W_K"], params[f"{prefix}.{kv}b_K"]
    W_V, b_V = params[f"{prefix}.{kv}W_V"], params[f"{prefix}.{kv}b_V"]
    if getattr(cfg, "ungroup_grouped_query_attention", False):  # keys/values computed per query head
        group = cfg.n_heads // W_K.shape[0]
        W_K, b_K, W_V, b_V = (np.repeat(t, group, axis=0) for t in (W_K, b_K, W_V, b_V))
    q = np.einsum("bpd,hde->bphe", qk_in, params[f"{prefix}.W_Q"]) + params[f"{prefix}.b_Q"]
    k = np.einsum("bpd,hde->bphe", qk_in, W_K) + b_K
    v = np.einsum("bpd,hde->bphe", x, W_V) + b_V
    acts[f"{prefix}.hook_q"], acts[f"{prefix}.hook_k"], acts[f"{prefix}.hook_v"] = q, k, v
    if cfg.positional_embedding_type == "rotary":
        q, k = rotary(q, cfg), rotary(k, cfg)
        acts[f"{prefix}.hook_rot_q"], acts[f"{prefix}.hook_rot_k"] = q, k
    group = cfg.n_heads // k.shape[2]
    k, v = np.repeat(k, group, axis=2), np.repeat(v, group, axis=2)  # query head i reads kv head i // group
    scores = np.einsum("bqhe,bkhe->bhqk", q, k) / cfg.attn_scale
    if cfg.positional_embedding_type == "alibi":
        scores = scores + alibi(cfg.n_heads, x.shape[1])
    if cfg.causal:
        n = x.shape[1]
        distance = np.arange(n)[:, None] - np.arange(n)[None, :]  # query minus key position
        blocked = distance < 0
        if getattr(cfg, "attn_types", None) is not None and cfg.attn_types[layer] == "local":
            blocked = blocked | (distance >= cfg.window_size)  # a local layer sees the last window_size keys
        scores = np.where(blocked, -np.inf, scores)
    pattern = softmax(scores)
    z = np.einsum("bhqk,bkhe->bqhe", pattern, v)
    acts[f"{prefix}.hook_attn_scores"], acts[f"{prefix}.hook_pattern"], acts[f"{prefix}.hook_z"] = (
        scores,
        pattern,
        z,
    )
    result = np.einsum("bphe,hed->bphd", z, params[f"{prefix}.W_O"])  # each head's write to the stream
    if cfg.use_attn_result:
        acts[f"{prefix}.hook_result"] = result
    return result.sum(axis=2) + params[f"{prefix}.b_O"]


# ---- MLP and the whole model -----------------------------------------------------------------
def mlp(x: np.ndarray, prefix: str, params: Params, cfg: Any, acts: Acts) -> np.ndarray:
    if getattr(cfg, "gated_mlp", False):  # act(x W_gate) * (x W_in) + b_in
        acts[f"{prefix}.hook_pre"] = pre = x @ params[f"{prefix}.W_gate"]
        acts[f"{prefix}.hook_pre_linear"] = pre_linear = x @ params[f"{prefix}.W_in"]
        acts[f"{prefix}.hook_post"] = post = ACTIVATIONS[cfg.act_fn](pre) * pre_linear + params[f"{prefix}.b_in"]
        return post @ params[f"{prefix}.W_out"] + params[f"{prefix}.b_out"]
    acts[f"{prefix}.hook_pre"] = pre = x @ params[f"{prefix}.W_in"] + params[f"{prefix}.b_in"]
    post = ACTIVATIONS[cfg.act_fn](pre)
    if cfg.act_fn == "solu_ln":  # SoLU is followed by its own LayerNorm over the neurons
        acts[f"{prefix}.hook_mid"] = post
        kind = "LN" if cfg.normalization_type == "LN" else "LNPre"
        post = normalize(post, f"{prefix}.ln", params, cfg, acts, kind=kind)
    acts[f"{prefix}.hook_post"] = post
    return post @ params[f"{prefix}.W_out"] + params[f"{prefix}.b_out"]


def block(
    resid: np.ndarray, layer: int, params: Params, cfg: Any, acts: Acts, qk_pos: np.ndarray | None = None
) -> np.ndarray:
    p = f"blocks.{layer}"
    acts[f"{p}.hook_resid_pre"] = resid
    normalized = normalize(resid, f"{p}.ln1", params, cfg, acts)
    attn_out = attention(normalized, f"{p}.attn", params, cfg, acts, layer, qk_pos)
    acts[f"{p}.hook_attn_out"] = attn_out
    if getattr(cfg, "parallel_attn_mlp", False) and not cfg.attn_only:  # both sublayers read resid_pre
        mlp_out = mlp(normalize(resid, f"{p}.ln2", params, cfg, acts), f"{p}.mlp", params, cfg, acts)
        acts[f"{p}.hook_mlp_out"] = mlp_out
        resid = resid + attn_out + mlp_out
        acts[f"{p}.hook_resid_post"] = resid
        return resid
    resid = resid + attn_out
    if not cfg.attn_only:
        acts[f"{p}.hook_resid_mid"] = resid
        mlp_out = mlp(normalize(resid, f"{p}.ln2", params, cfg, acts), f"{p}.mlp", params, cfg, acts)
        acts[f"{p}.hook_mlp_out"] = mlp_out
        resid = resid + mlp_out
    acts[f"{p}.hook_resid_post"] = resid
    return resid


def as_config(cfg: Any) -> Any:
    """Accept a config object or its dict form."""
    return SimpleNamespace(**cfg) if isinstance(cfg, Mapping) else cfg


def forward(params: Params, cfg: Any, tokens: np.ndarray) -> tuple[np.ndarray, Acts]:
    """Logits [batch, pos, d_vocab_out] and every activation, for integer tokens [batch, pos]."""
    cfg = as_config(cfg)
    tokens = np.atleast_2d(np.asarray(tokens))
    acts: Acts = {}
    resid = acts["hook_embed"] = params["embed.W_E"][tokens]
    qk_pos = None  # a shortformer adds its positions to every layer's queries and keys, not to the stream
    if cfg.positional_embedding_type in ("standard", "shortformer"):
        acts["hook_pos_embed"] = np.broadcast_to(params["pos_embed.W_pos"][: tokens.shape[1]], resid.shape)
        if cfg.positional_embedding_type == "standard":
            resid = resid + acts["hook_pos_embed"]
        else:
            qk_pos = acts["hook_pos_embed"]
    for layer in range(cfg.n_layers):
        resid = block(resid, layer, params, cfg, acts, qk_pos)
    resid = normalize(resid, "ln_final", params, cfg, acts)
    return resid @ params["unembed.W_U"] + params["unembed.b_U"], acts
