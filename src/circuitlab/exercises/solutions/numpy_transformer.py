"""Problem set `numpy-transformer`: a GPT-style transformer in NumPy, from softmax to greedy generation.

Write each function with array operations (no Python loops over elements, positions or heads: the
checker flags them). Shapes follow TransformerLens: W_Q [n_heads, d_model, d_head], W_O [n_heads,
d_head, d_model], row vectors (x @ W). Every fixture is float64; the tolerance is 1e-6 unless a
docstring says otherwise. Run `python problems.py` to test what you have written so far.
"""

import json

import numpy as np


def softmax(x):
    """Softmax over the last axis: softmax(x)_i = exp(x_i) / sum_j exp(x_j).

    x: [..., n] -> [..., n], each row summing to 1. Make it stable: exp(1000) overflows to inf, so
    subtract each row's maximum first (softmax(x - c) = softmax(x)). Entries equal to -inf get weight 0.

    Example: softmax(np.array([0.0, np.log(3.0)])) -> [0.25, 0.75]; softmax(np.array([1000.0, 1000.0]))
    -> [0.5, 0.5].
    """
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def layer_norm(x, w, b, eps=1e-5):
    """LayerNorm over the last axis (d_model): (x - mean) / sqrt(var + eps) * w + b.

    x: [..., d_model]; w, b: [d_model]. mean and var are over the last axis only, var is the biased
    variance (divide by d_model, as np.var does by default).

    Example: layer_norm(np.array([[1.0, 3.0]]), np.ones(2), np.zeros(2)) -> [[-1, 1]] (to 1e-5).
    """
    centred = x - x.mean(axis=-1, keepdims=True)
    return centred / np.sqrt((centred**2).mean(axis=-1, keepdims=True) + eps) * w + b


def causal_mask(scores):
    """Hide the future: set scores[..., q, k] to -inf wherever the key comes after the query (k > q).

    scores: [..., n_query, n_key] (n_query == n_key) -> the same shape. A token may attend to itself
    (k == q) and to every earlier token.

    Example: causal_mask(np.zeros((2, 2))) -> [[0, -inf], [0, 0]].
    """
    n = scores.shape[-1]
    future = np.arange(n)[None, :] > np.arange(n)[:, None]  # [query, key]
    return np.where(future, -np.inf, scores)


def attention_scores(q, k):
    """Scaled dot products of queries and keys: scores[b, h, i, j] = q[b, i, h] . k[b, j, h] / sqrt(d_head).

    q, k: [batch, pos, n_heads, d_head] -> [batch, n_heads, query_pos, key_pos]. Why divide by
    sqrt(d_head)? For random q, k with unit-variance entries, q . k has variance d_head; scaling keeps
    the scores of order 1 so the softmax does not saturate (see the `concepts` set).

    Example: with d_head = 4, q = k = ones -> every score is 4 / 2 = 2.
    """
    return np.einsum("bqhe,bkhe->bhqk", q, k) / np.sqrt(q.shape[-1])


def attention_head(x, W_Q, W_K, W_V):
    """One causal attention head on one sequence: z = softmax(mask(x W_Q (x W_K)^T / sqrt(d_head))) x W_V.

    x: [pos, d_model]; W_Q, W_K, W_V: [d_model, d_head] -> z: [pos, d_head], the weighted average of
    the values each position attends to. Use causal_mask and softmax.

    Example: position 0 can only attend to itself, so z[0] == x[0] @ W_V.
    """
    q, k, v = x @ W_Q, x @ W_K, x @ W_V  # [pos, d_head]
    pattern = softmax(causal_mask(q @ k.T / np.sqrt(W_Q.shape[-1])))  # [query, key]
    return pattern @ v


def multi_head_attention(x, W_Q, b_Q, W_K, b_K, W_V, b_V, W_O, b_O):
    """Causal multi-head attention in TransformerLens shapes, all heads at once.

    x: [batch, pos, d_model]; W_Q, W_K, W_V: [n_heads, d_model, d_head]; b_Q, b_K, b_V: [n_heads, d_head];
    W_O: [n_heads, d_head, d_model]; b_O: [d_model] -> [batch, pos, d_model].
    q = x W_Q + b_Q (per head, likewise k, v); pattern = softmax(mask(q k^T / sqrt(d_head))); z = pattern v;
    out = sum over heads of z W_O, + b_O. np.einsum is the tool: "bpd,hde->bphe" makes q.

    Example: with W_O = 0 the result is b_O at every position.
    """
    q = np.einsum("bpd,hde->bphe", x, W_Q) + b_Q
    k = np.einsum("bpd,hde->bphe", x, W_K) + b_K
    v = np.einsum("bpd,hde->bphe", x, W_V) + b_V
    pattern = softmax(causal_mask(attention_scores(q, k)))  # [batch, head, query, key]
    z = np.einsum("bhqk,bkhe->bqhe", pattern, v)
    return np.einsum("bqhe,hed->bqd", z, W_O) + b_O


def embed(tokens, W_E, W_pos):
    """Token plus learned positional embedding: resid[b, p] = W_E[tokens[b, p]] + W_pos[p].

    tokens: [batch, pos] integers; W_E: [d_vocab, d_model]; W_pos: [n_ctx, d_model] (pos <= n_ctx)
    -> [batch, pos, d_model].

    Example: tokens [[2]] -> W_E[2] + W_pos[0], shape (1, 1, d_model).
    """
    return W_E[tokens] + W_pos[: tokens.shape[1]]


def sinusoidal_positions(n_ctx, d_model):
    """The fixed positional encoding of Vaswani et al. 2017: PE[p, 2i] = sin(p / 10000^(2i / d_model)),
    PE[p, 2i + 1] = cos(p / 10000^(2i / d_model)).

    n_ctx, d_model: ints (d_model even) -> [n_ctx, d_model].

    Example: sinusoidal_positions(2, 2) -> [[0, 1], [sin(1), cos(1)]].
    """
    angles = np.arange(n_ctx)[:, None] / 10000 ** (np.arange(0, d_model, 2)[None, :] / d_model)  # [pos, d/2]
    pe = np.empty((n_ctx, d_model))
    pe[:, 0::2], pe[:, 1::2] = np.sin(angles), np.cos(angles)
    return pe


def rotary(x, base=10000.0):
    """Rotary positions (RoPE, GPT-NeoX layout) for queries or keys: rotate pair (x_i, x_{i + d/2}) at
    position p by the angle p * base^(-2i / d), i < d/2, d = d_head.

    x: [batch, pos, n_heads, d_head] -> the same shape. With a = x[..., :d/2], b = x[..., d/2:], the
    result is concat(a cos - b sin, b cos + a sin). A dot product of two rotated vectors then depends on
    their positions only through the distance between them.

    Example: position 0 is unchanged (angle 0).
    """
    d = x.shape[-1]
    angles = np.arange(x.shape[1])[:, None] * base ** (-np.arange(d // 2) / (d / 2))  # [pos, d/2]
    sin, cos = np.sin(angles)[:, None, :], np.cos(angles)[:, None, :]  # [pos, 1, d/2]
    a, b = x[..., : d // 2], x[..., d // 2 :]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)


def mlp(x, W_in, b_in, W_out, b_out):
    """The MLP sublayer: gelu(x W_in + b_in) W_out + b_out, with GPT-2's tanh GELU
    gelu(u) = 0.5 u (1 + tanh(sqrt(2 / pi) (u + 0.044715 u^3))).

    x: [..., d_model]; W_in: [d_model, d_mlp]; b_in: [d_mlp]; W_out: [d_mlp, d_model]; b_out: [d_model]
    -> [..., d_model].

    Example: with W_out = 0 the result is b_out everywhere.
    """
    u = x @ W_in + b_in
    return 0.5 * u * (1 + np.tanh(np.sqrt(2 / np.pi) * (u + 0.044715 * u**3))) @ W_out + b_out


def transformer_block(resid, params, layer):
    """One pre-LayerNorm block: resid_mid = resid + attn(ln1(resid)); resid_post = resid_mid + mlp(ln2(resid_mid)).

    resid: [batch, pos, d_model]; params: dict of arrays under TransformerLens state-dict names, e.g.
    params[f"blocks.{layer}.attn.W_Q"] [n_heads, d_model, d_head], f"blocks.{layer}.ln1.w", ".ln1.b",
    ".attn.b_Q", ..., ".attn.W_O", ".attn.b_O", ".ln2.w", ".ln2.b", ".mlp.W_in", ".mlp.b_in",
    ".mlp.W_out", ".mlp.b_out"; layer: int -> resid_post [batch, pos, d_model]. LayerNorm eps is 1e-5.
    Use layer_norm, multi_head_attention and mlp.

    Example: the same block applied to a batch of 2 equal sequences gives 2 equal outputs.
    """
    p = f"blocks.{layer}."
    a = p + "attn."
    attn_out = multi_head_attention(
        layer_norm(resid, params[p + "ln1.w"], params[p + "ln1.b"]),
        params[a + "W_Q"], params[a + "b_Q"], params[a + "W_K"], params[a + "b_K"],
        params[a + "W_V"], params[a + "b_V"], params[a + "W_O"], params[a + "b_O"],
    )  # fmt: skip
    resid = resid + attn_out
    mlp_in = layer_norm(resid, params[p + "ln2.w"], params[p + "ln2.b"])
    m = p + "mlp."
    return resid + mlp(mlp_in, params[m + "W_in"], params[m + "b_in"], params[m + "W_out"], params[m + "b_out"])


def forward(model_path, tokens):
    """The whole forward pass of a model exported with `circuitlab.numpy_ref.export_npz`: logits.

    model_path: path of an .npz file holding the weights under state-dict names ("embed.W_E",
    "pos_embed.W_pos", "blocks.0....", "ln_final.w", "ln_final.b", "unembed.W_U", "unembed.b_U") and the
    config as JSON text under "__config__" (json.loads(str(data["__config__"]))["n_layers"], ...).
    tokens: [batch, pos] -> logits [batch, pos, d_vocab]: embed, every block, ln_final, then @ W_U + b_U.
    A Python loop over layers is allowed.

    Example: logits[:, p] depends only on tokens[:, : p + 1] (the mask at work).
    """
    with np.load(model_path) as data:
        cfg = json.loads(str(data["__config__"]))
        params = {k: data[k] for k in data.files if k != "__config__"}
    resid = embed(tokens, params["embed.W_E"], params["pos_embed.W_pos"])
    for layer in range(cfg["n_layers"]):
        resid = transformer_block(resid, params, layer)
    resid = layer_norm(resid, params["ln_final.w"], params["ln_final.b"])
    return resid @ params["unembed.W_U"] + params["unembed.b_U"]


def next_token_loss(logits, tokens):
    """Mean cross-entropy of predicting each next token: -mean over b, p < pos-1 of
    log softmax(logits[b, p])[tokens[b, p + 1]].

    logits: [batch, pos, d_vocab]; tokens: [batch, pos] -> a float (natural log, nats). The prediction
    at the last position has no target and is not scored. Compute log-softmax stably (logsumexp).

    Example: uniform logits over a vocabulary of 10 give log(10) = 2.3026.
    """
    shifted = logits[:, :-1] - logits[:, :-1].max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    target = tokens[:, 1:]
    return -np.take_along_axis(log_probs, target[..., None], axis=-1).mean()


def greedy_generate(model_path, tokens, n_new):
    """Greedy decoding: append argmax of the last position's logits, n_new times.

    model_path: as in forward; tokens: [batch, pos] prompt; n_new: int -> [batch, pos + n_new] integer
    tokens, the prompt first. Use forward. A Python loop over new tokens is allowed.

    Example: n_new = 0 returns the prompt unchanged.
    """
    for _ in range(n_new):
        next_token = forward(model_path, tokens)[:, -1].argmax(axis=-1)  # [batch]
        tokens = np.concatenate([tokens, next_token[:, None]], axis=1)
    return tokens
