"""Problem set `circuits`: reading a trained induction model from its weights and activations.

The model (`model.npz` beside this file, loaded for you where a problem takes `params`) is a 2-layer,
attention-only transformer without LayerNorm, 2 heads per layer, trained on repeated random tokens
(BOS = token 0, then random tokens, then a copy of a chunk of them). It grew a previous-token head in
layer 0 and induction heads in layer 1: the scores you compute show which. Conventions follow
Elhage et al. 2021 and TransformerLens: row vectors, W_Q [n_heads, d_model, d_head], W_O [n_heads,
d_head, d_model], `x @ OV` is what a head writes when it attends to x, and `x_q @ QK @ x_k^T` its
attention score. No Python loops over heads, positions or batch (the checker flags them).
Tolerance 1e-6 unless a docstring says otherwise. Run `python problems.py` to test your functions.
"""

import numpy as np


def qk_circuit(W_Q, W_K):
    """The QK circuit of one head: W_QK = W_Q W_K^T, so that score(x_q, x_k) = x_q W_QK x_k^T.

    W_Q, W_K: [d_model, d_head] -> [d_model, d_model] (rank d_head).

    Example: np.linalg.matrix_rank(qk_circuit(W_Q, W_K)) <= d_head.
    """
    return W_Q @ W_K.T


def ov_circuit(W_V, W_O):
    """The OV circuit of one head: W_OV = W_V W_O, what the head writes (x W_OV) when it attends to x.

    W_V: [d_model, d_head]; W_O: [d_head, d_model] -> [d_model, d_model].

    Example: a head attending fully to one position with residual x writes x @ ov_circuit(W_V, W_O).
    """
    return W_V @ W_O


def full_ov_circuit(W_E, W_V, W_O, W_U):
    """Full OV circuits of all heads of a layer: W_E W_V^h W_O^h W_U, token in -> logits out.

    W_E: [d_vocab, d_model]; W_V: [n_heads, d_model, d_head]; W_O: [n_heads, d_head, d_model];
    W_U: [d_model, d_vocab] -> [n_heads, d_vocab, d_vocab]. Row t: how attending to token t changes
    each logit. A copying head has large diagonal entries.

    Example: full_ov_circuit(...)[h] == W_E @ W_V[h] @ W_O[h] @ W_U.
    """
    return W_E @ W_V @ W_O @ W_U


def full_qk_circuit(W_E, W_Q, W_K):
    """Full QK circuits of all heads: W_E W_Q^h (W_E W_K^h)^T, query token x key token -> score.

    W_E: [d_vocab, d_model]; W_Q, W_K: [n_heads, d_model, d_head] -> [n_heads, d_vocab, d_vocab]
    (unscaled: no 1/sqrt(d_head)).

    Example: entry [h, i, j] is the score head h gives a key token j from a query token i, positions ignored.
    """
    return (W_E @ W_Q) @ np.swapaxes(W_E @ W_K, -1, -2)


def positional_qk_circuit(W_pos, W_Q, W_K):
    """Positional QK circuits of all heads: W_pos W_Q^h (W_pos W_K^h)^T, query position x key position.

    W_pos: [n_ctx, d_model]; W_Q, W_K: [n_heads, d_model, d_head] -> [n_heads, n_ctx, n_ctx]. A
    previous-token head has its largest entries just below the diagonal (key = query - 1).

    Example: same formula as full_qk_circuit with W_pos in place of W_E.
    """
    return (W_pos @ W_Q) @ np.swapaxes(W_pos @ W_K, -1, -2)


def copying_score(W_E, W_V, W_O, W_U):
    """Copying score of each head's full OV circuit from its eigenvalues: the share of the eigenvalue
    magnitude with positive real part, sum |lambda| [Re lambda > 0] / sum |lambda|.

    Arguments as in full_ov_circuit -> [n_heads] in [0, 1]: near 1 for a head that copies the token it
    attends to, about 0.5 for a random head. np.linalg.eigvals works on stacks of matrices.

    Example: for an identity-like full OV circuit every eigenvalue is positive, so the score is 1.
    """
    eig = np.linalg.eigvals(full_ov_circuit(W_E, W_V, W_O, W_U))  # [n_heads, d_vocab]
    return (np.abs(eig) * (eig.real > 0)).sum(-1) / np.abs(eig).sum(-1)


def composition_score(W_A, W_B):
    """How much two circuits compose (Elhage et al. 2021): ||W_A W_B||_F / (||W_A||_F ||W_B||_F).

    W_A, W_B: [d_model, d_model] (e.g. W_A = an earlier head's OV circuit, W_B = a later head's OV for
    V-composition, or its W_QK^T = W_K W_Q^T for K-composition) -> a float in [0, 1]; 1 when W_B reads
    exactly the subspace W_A writes, 0 when it ignores it.

    Example: composition_score(np.eye(4), np.eye(4)) -> 0.5 (||I|| = 2).
    """
    return np.linalg.norm(W_A @ W_B) / (np.linalg.norm(W_A) * np.linalg.norm(W_B))


def k_composition_scores(W_V0, W_O0, W_Q1, W_K1):
    """K-composition of every layer-0 head into every layer-1 head (Elhage et al. 2021):
    score[i, j] = ||W_OV^i W_K^j W_Q^j^T||_F / (||W_OV^i||_F ||W_K^j W_Q^j^T||_F), W_OV^i = W_V0^i W_O0^i.

    W_V0: [n_heads, d_model, d_head]; W_O0: [n_heads, d_head, d_model] (layer 0); W_Q1, W_K1: [n_heads,
    d_model, d_head] (layer 1) -> [n_heads_0, n_heads_1]. High when head i's output is what head j's keys
    read: the previous-token head feeding an induction head.

    Example: every score lies in [0, 1]; an OV whose output is orthogonal to what W_K reads scores 0.
    """
    ov = W_V0 @ W_O0  # [i, d_model, d_model]
    kq = W_K1 @ np.swapaxes(W_Q1, -1, -2)  # [j, d_model, d_model]
    product = np.einsum("iab,jbc->ijac", ov, kq)
    norm = np.sqrt((product**2).sum((-2, -1)))
    return norm / (np.sqrt((ov**2).sum((-2, -1)))[:, None] * np.sqrt((kq**2).sum((-2, -1)))[None, :])


def previous_token_scores(pattern):
    """Previous-token score of each head: mean attention from each query q >= 1 to key q - 1.

    pattern: [batch, n_heads, pos, pos] (rows sum to 1) -> [n_heads], averaged over batch and queries
    1 .. pos-1.

    Example: a head with pattern[b, h, q, q - 1] == 1 everywhere scores 1.
    """
    return np.diagonal(pattern, offset=-1, axis1=-2, axis2=-1).mean(axis=(0, -1))


def induction_scores(pattern, period):
    """Induction score of each head on sequences BOS, r_1 .. r_n, r_1 .. r_n (n = period): mean attention
    from each query q in the second copy (period + 1 <= q < pos) to the token after its earlier
    occurrence, key q - period + 1.

    pattern: [batch, n_heads, pos, pos] with pos = 2 period + 1; period: int -> [n_heads].

    Example: an induction head scores close to 1; a previous-token head close to 0.
    """
    # diagonal entry j is (query j + period - 1, key j); queries from period + 1 on are j >= 2
    return np.diagonal(pattern, offset=-(period - 1), axis1=-2, axis2=-1)[..., 2:].mean(axis=(0, -1))


def direct_logit_attribution(head_results, W_U, answers):
    """Direct logit attribution: how much each head's output adds to the answer's logit directly
    (no LayerNorm in this model): dla[b, h] = head_results[b, h] . W_U[:, answers[b]].

    head_results: [batch, n_heads, d_model] (each head's write to the residual stream at the final
    position); W_U: [d_model, d_vocab]; answers: [batch] ints -> [batch, n_heads].

    Example: a head writing exactly the unembedding column of the answer, W_U[:, a], gets |W_U[:, a]|^2.
    """
    return np.einsum("bhd,db->bh", head_results, W_U[:, answers])


def mean_ablate_head(z, head):
    """Mean ablation: replace one head's output z[:, :, head] by its mean over the batch (separately at
    each position), leaving the other heads as they are.

    z: [batch, pos, n_heads, d_head]; head: int -> a new array of the same shape (do not change z).

    Example: after ablation z[0, :, head] == z[1, :, head] (every sequence gets the same value).
    """
    out = z.copy()
    out[:, :, head] = z[:, :, head].mean(axis=0)
    return out


def attn_only_forward(params, tokens):
    """Logits of the attention-only model: resid = W_E[tokens] + W_pos; each layer adds its causal
    multi-head attention (with biases b_Q, b_K, b_V, b_O and 1/sqrt(d_head) scaling); logits = resid W_U + b_U.

    params: dict of arrays under state-dict names ("embed.W_E", "pos_embed.W_pos", "blocks.{l}.attn.W_Q",
    ".b_Q", ".W_K", ".b_K", ".W_V", ".b_V", ".W_O", ".b_O", "unembed.W_U", "unembed.b_U"); tokens:
    [batch, pos] -> [batch, pos, d_vocab]. A Python loop over layers is allowed.

    Example: the logits at position 0 depend only on tokens[:, 0].
    """
    resid = params["embed.W_E"][tokens] + params["pos_embed.W_pos"][: tokens.shape[1]]
    n_layers = len({k.split(".")[1] for k in params if k.startswith("blocks.")})
    for layer in range(n_layers):
        resid = resid + _attention(params, layer, resid)
    return resid @ params["unembed.W_U"] + params["unembed.b_U"]


def patch_residual_cell(params, clean_tokens, corrupt_tokens, layer, pos):
    """Activation patching of one cell: run the model on corrupt_tokens, but replace the residual stream
    entering layer `layer` (blocks.{layer}.hook_resid_pre) at position `pos` by its value on clean_tokens.

    params as in attn_only_forward; clean_tokens, corrupt_tokens: [batch, n_pos]; layer, pos: ints ->
    logits of the patched run [batch, n_pos, d_vocab]. layer == n_layers patches the final residual
    stream. A Python loop over layers is allowed.

    Example: patching every layer's cell at a position the corruption did not change changes nothing.
    """
    n_layers = len({k.split(".")[1] for k in params if k.startswith("blocks.")})
    clean = params["embed.W_E"][clean_tokens] + params["pos_embed.W_pos"][: clean_tokens.shape[1]]
    resid = params["embed.W_E"][corrupt_tokens] + params["pos_embed.W_pos"][: corrupt_tokens.shape[1]]
    for i in range(n_layers + 1):
        if i == layer:
            resid = resid.copy()
            resid[:, pos] = clean[:, pos]
        if i == n_layers:
            break
        clean = clean + _attention(params, i, clean)
        resid = resid + _attention(params, i, resid)
    return resid @ params["unembed.W_U"] + params["unembed.b_U"]


def _attention(params, layer, x):
    """Causal multi-head attention of one layer on x [batch, pos, d_model] (a helper, not a problem)."""
    p = f"blocks.{layer}.attn."
    q = np.einsum("bpd,hde->bphe", x, params[p + "W_Q"]) + params[p + "b_Q"]
    k = np.einsum("bpd,hde->bphe", x, params[p + "W_K"]) + params[p + "b_K"]
    v = np.einsum("bpd,hde->bphe", x, params[p + "W_V"]) + params[p + "b_V"]
    scores = np.einsum("bqhe,bkhe->bhqk", q, k) / np.sqrt(q.shape[-1])
    n = x.shape[1]
    scores = np.where(np.arange(n)[None, :] > np.arange(n)[:, None], -np.inf, scores)
    pattern = np.exp(scores - scores.max(-1, keepdims=True))
    pattern = pattern / pattern.sum(-1, keepdims=True)
    z = np.einsum("bhqk,bkhe->bqhe", pattern, v)
    return np.einsum("bqhe,hed->bqd", z, params[p + "W_O"]) + params[p + "b_O"]
