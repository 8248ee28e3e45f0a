"""Problem set `concepts`: course questions answered by small experiments with a checked numeric answer.

Why divide attention scores by sqrt(d_head)? What changes without positional embeddings, or without the
causal mask? Why can one attention-only layer not do induction? Each function is a small experiment;
its docstring says what answer to expect and which circuitlab study answers the question at scale
(`circuitlab study --list` lists them; `circuitlab study NAME --quick` runs one). Single heads use
W_Q, W_K, W_V [d_model, d_head] on one sequence x [pos, d_model]. No Python loops over elements,
positions or heads (the checker flags them). Tolerance 1e-6 unless a docstring says otherwise.
"""

import numpy as np


def dot_product_std(q, k):
    """Standard deviation (np.std, ddof 0) of the dot products q[i] . k[i] over the n samples.

    q, k: [n, d_head], entries drawn from N(0, 1) -> a float. Expect about sqrt(d_head): the variance of
    a sum of d_head independent unit-variance products is d_head. That is why scores are divided by
    sqrt(d_head). At scale: study `attention-scaling`.

    Example: with d_head = 64 the answer is close to 8.
    """
    return (q * k).sum(-1).std()


def mean_max_weight(scores):
    """How saturated a softmax is: the mean over rows of the largest softmax weight of the row.

    scores: [n_rows, n_keys] -> a float in [1/n_keys, 1]. Near 1/n_keys: attention is spread; near 1:
    it is one-hot and gradients through the other keys vanish.

    Example: all-zero scores over 16 keys -> 1/16.
    """
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return (e.max(-1) / e.sum(-1)).mean()


def attention_output(x, W_Q, W_K, W_V, causal, scale):
    """One attention head on one sequence: z = softmax(S) x W_V with S = (x W_Q)(x W_K)^T, divided by
    sqrt(d_head) if `scale`, and with the future (key > query) set to -inf if `causal`.

    x: [pos, d_model]; W_Q, W_K, W_V: [d_model, d_head]; causal, scale: bools -> [pos, d_head].

    Example: with causal=True, z[0] == x[0] @ W_V.
    """
    scores = (x @ W_Q) @ (x @ W_K).T
    if scale:
        scores = scores / np.sqrt(W_Q.shape[-1])
    if causal:
        n = x.shape[0]
        scores = np.where(np.arange(n)[None, :] > np.arange(n)[:, None], -np.inf, scores)
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)) @ (x @ W_V)


def saturation_with_and_without_scaling(x, W_Q, W_K):
    """The experiment behind the 1/sqrt(d_head): (mean max weight with scaling, without scaling) of the
    non-causal attention pattern of one head.

    x: [pos, d_model]; W_Q, W_K: [d_model, d_head] with N(0, 1/d_model) entries, d_head = 256 -> a tuple
    of 2 floats. Expect the unscaled pattern to be far more saturated (closer to one-hot). At scale:
    study `attention-scaling`.

    Example: the first value is smaller than the second.
    """
    scores = (x @ W_Q) @ (x @ W_K).T
    return mean_max_weight(scores / np.sqrt(W_Q.shape[-1])), mean_max_weight(scores)


def permutation_gap(x, W_Q, W_K, W_V, perm, causal):
    """Does attention know the order of its inputs? max |attention(x[perm]) - attention(x)[perm]| for one
    scaled head (attention_output with scale=True).

    x: [pos, d_model] (token embeddings, no positional embedding); perm: [pos] a permutation;
    causal: bool -> a float. Expect 0 (to rounding) without the causal mask: attention alone is
    permutation-equivariant, a bag of tokens. The mask alone already breaks that. At scale: study
    `no-positional-embedding`.

    Example: perm = np.arange(pos) gives 0 either way.
    """
    return np.abs(
        attention_output(x[perm], W_Q, W_K, W_V, causal, True) - attention_output(x, W_Q, W_K, W_V, causal, True)[perm]
    ).max()


def last_position_order_gap(W_E, W_pos, W_Q, W_K, W_V, tokens, perm):
    """Can the last position tell the order of the tokens before it? With x = W_E[tokens] + W_pos[:pos],
    a causal scaled head: |z_last(tokens) - z_last(tokens')| max over features, where tokens' keeps the
    last token and reorders the others: tokens' = tokens[perm] with perm[-1] == pos - 1.

    W_E: [d_vocab, d_model]; W_pos: [n_ctx, d_model]; tokens, perm: [pos] -> a float. Expect exactly 0
    (to rounding) with W_pos = 0: without positions the last query sees an unordered set. At scale:
    study `no-positional-embedding`.

    Example: perm = np.arange(pos) gives 0.
    """
    x, x_perm = W_E[tokens] + W_pos[: len(tokens)], W_E[tokens[perm]] + W_pos[: len(tokens)]
    z, z_perm = attention_output(x, W_Q, W_K, W_V, True, True), attention_output(x_perm, W_Q, W_K, W_V, True, True)
    return np.abs(z[-1] - z_perm[-1]).max()


def future_influence(x, x_changed, W_Q, W_K, W_V, causal):
    """How much each position's output changes when only the last input changes: for each position p,
    max over features of |z(x_changed)[p] - z(x)[p]| (one scaled head).

    x, x_changed: [pos, d_model], equal except in the last row; causal: bool -> [pos]. Expect zeros
    before the last position with the mask, and nonzero everywhere without it: trained without a mask,
    a language model reads the token it must predict and learns nothing useful. At scale: study
    `no-causal-mask`.

    Example: the last entry is nonzero either way.
    """
    changed = attention_output(x_changed, W_Q, W_K, W_V, causal, True)
    return np.abs(changed - attention_output(x, W_Q, W_K, W_V, causal, True)).max(-1)


def key_score_dependence(params, tokens, changed_tokens, layer, key):
    """Why one attention-only layer cannot do induction. An induction head must attend to the key whose
    *previous* token equals the current one. Change only the token before `key` and measure, for each
    head of `layer`, |change| of the (scaled) attention score from the last query to `key`.

    params: an attention-only model's arrays under state-dict names ("embed.W_E", "pos_embed.W_pos",
    "blocks.{l}.attn.W_Q", ".b_Q", ".W_K", ".b_K", ".W_V", ".b_V", ".W_O", ".b_O"); tokens,
    changed_tokens: [pos], equal except at key - 1; layer, key: ints -> [n_heads]. Expect exactly 0 in
    layer 0 (its score for a key sees only that key's token and position) and nonzero in layer 1, where
    layer-0 heads have already moved the previous token into the key's residual stream (K-composition).
    A Python loop over layers is allowed. At scale: study `induction-needs-two-layers`.

    Example: key_score_dependence(params, t, t2, 0, key) -> zeros.
    """
    scores = []
    for t in (tokens, changed_tokens):
        resid = params["embed.W_E"][t] + params["pos_embed.W_pos"][: len(t)]  # [pos, d_model]
        for i in range(layer + 1):
            p = f"blocks.{i}.attn."
            q = np.einsum("pd,hde->hpe", resid, params[p + "W_Q"]) + params[p + "b_Q"][:, None]
            k = np.einsum("pd,hde->hpe", resid, params[p + "W_K"]) + params[p + "b_K"][:, None]
            s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])  # [head, query, key]
            if i == layer:
                scores.append(s[:, -1, key])
                break
            n = len(t)
            s = np.where(np.arange(n)[None, :] > np.arange(n)[:, None], -np.inf, s)
            pattern = np.exp(s - s.max(-1, keepdims=True))
            pattern = pattern / pattern.sum(-1, keepdims=True)
            v = np.einsum("pd,hde->hpe", resid, params[p + "W_V"]) + params[p + "b_V"][:, None]
            resid = resid + np.einsum("hqk,hke,hed->qd", pattern, v, params[p + "W_O"]) + params[p + "b_O"]
    return np.abs(scores[0] - scores[1])
