"""Circuits read from the weights (Elhage et al. 2021): QK / OV circuits, full circuits through the
embeddings, composition scores between heads, and the structure of the positional embedding.

Everything vocabulary-sized stays a `FactoredMatrix` ([layer, head, vocab, vocab] of rank d_head), so
nothing d_vocab x d_vocab is built unless asked. Conventions follow TransformerLens: row vectors,
`x @ OV` is what a head writes when attending to x, and `x_q @ QK @ x_k^T` is its attention score.
LayerNorm is ignored in these weight-only circuits (fold it first for pretrained models).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model import FactoredMatrix, HookedTransformer


def full_ov_circuit(model: HookedTransformer) -> FactoredMatrix:
    """W_E W_V W_O W_U per head: [layer, head, d_vocab, d_vocab_out], factored through d_head.

    Row i: how attending to token i changes each output logit (copying heads have a large diagonal).
    """
    return FactoredMatrix(model.W_E @ model.W_V, model.W_O @ model.W_U)


def full_qk_circuit(model: HookedTransformer) -> FactoredMatrix:
    """W_E W_Q W_K^T W_E^T per head: [layer, head, d_vocab (query token), d_vocab (key token)]."""
    return FactoredMatrix(model.W_E @ model.W_Q, (model.W_E @ model.W_K).transpose(-2, -1))


def positional_qk_circuit(model: HookedTransformer) -> FactoredMatrix:
    """W_pos W_Q W_K^T W_pos^T per head: [layer, head, query pos, key pos]; a previous-token head's
    peaks sit just below the diagonal."""
    return FactoredMatrix(model.W_pos @ model.W_Q, (model.W_pos @ model.W_K).transpose(-2, -1))


def _gram_norm_sq(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """||A @ B||_F^2 from the d_head x d_head Gram matrices: sum((A^T A) * (B B^T))."""
    return ((A.transpose(-2, -1) @ A) * (B @ B.transpose(-2, -1))).sum((-2, -1))


def composition_scores(model: HookedTransformer, kind: str) -> torch.Tensor:
    """Q-, K- or V-composition of every earlier head's OV into every later head: [L1, H1, L2, H2].

    score = ||OV_1 @ R_2||_F / (||OV_1||_F ||R_2||_F) with R = QK (Q), QK^T (K) or OV (V), as in
    Elhage et al. 2021 and TransformerLens; pairs where head 2 is not in a later layer are 0.
    """
    if kind not in ("Q", "K", "V"):
        raise ValueError(f"kind={kind!r} is invalid: expected 'Q', 'K' or 'V'")
    return _composition(model.W_V, model.W_O, *_right_factors(model.W_Q, model.W_K, model.W_V, model.W_O, kind))


def _right_factors(W_Q, W_K, W_V, W_O, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    if kind == "Q":
        return W_Q, W_K.transpose(-2, -1)  # QK = W_Q W_K^T
    if kind == "K":
        return W_K, W_Q.transpose(-2, -1)  # QK^T = W_K W_Q^T
    return W_V, W_O


def _composition(A1: torch.Tensor, B1: torch.Tensor, A2: torch.Tensor, B2: torch.Tensor) -> torch.Tensor:
    """Pairwise ||A1 B1 A2 B2|| / (||A1 B1|| ||A2 B2||) for left heads (A1 B1) and right heads (A2 B2)."""
    n_layers, n_heads = A1.shape[:2]
    left_norm = _gram_norm_sq(A1, B1).sqrt()  # [L, H]
    right_norm = _gram_norm_sq(A2, B2).sqrt()
    G1 = A1.transpose(-2, -1) @ A1  # [L, H, e, e]
    G2 = B2 @ B2.transpose(-2, -1)  # [L, H, e', e']
    scores = torch.zeros(n_layers, n_heads, n_layers, n_heads, dtype=A1.dtype, device=A1.device)
    for l1 in range(n_layers - 1):  # a loop over layers; heads are all done at once
        M = torch.einsum("hed,LKdf->hLKef", B1[l1], A2[l1 + 1 :])  # [H1, L2, H2, e, e'] = B1 A2
        norm_sq = torch.einsum("hef,hLKfg,LKgi,hLKei->hLK", G1[l1], M, G2[l1 + 1 :], M)  # trace(G1 M G2 M^T)
        scores[l1, :, l1 + 1 :] = norm_sq.clamp(min=0).sqrt() / (left_norm[l1][:, None, None] * right_norm[l1 + 1 :])
    return scores


def composition_baseline(model: HookedTransformer, kind: str, n_samples: int = 16, seed: int = 0) -> float:
    """Mean composition score of random Gaussian heads with the model's shapes: the null level."""
    cfg = model.cfg
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(n_samples, *shape, generator=gen, dtype=torch.float64)

    d, e = cfg.d_model, cfg.d_head
    W_Q, W_K, W_V, W_O = rand(1, d, e), rand(1, d, e), rand(1, d, e), rand(1, e, d)
    A2, B2 = _right_factors(W_Q, W_K, W_V, W_O, kind)
    left, right = W_V @ W_O, A2 @ B2  # [n, 1, d, d]
    scores = torch.linalg.matrix_norm(left @ right) / (torch.linalg.matrix_norm(left) * torch.linalg.matrix_norm(right))
    return scores.mean().item()


def all_composition_scores(model: HookedTransformer) -> dict[str, torch.Tensor]:
    """{"Q": [L, H, L, H], "K": ..., "V": ...}."""
    with torch.no_grad():
        return {kind: composition_scores(model, kind) for kind in ("Q", "K", "V")}


@dataclass
class PositionalStructure:
    singular_values: torch.Tensor  # [min(n_ctx, d_model)]
    explained_variance: torch.Tensor  # fraction per principal component
    effective_rank: float  # exp(entropy of the normalised singular values) (Roy & Vetterli 2007)
    dims_for_90: int  # principal components explaining 90% of the variance
    position_norms: torch.Tensor  # [n_ctx]: ||W_pos[p] - mean||, small where a position stayed unlearned


def positional_structure(model: HookedTransformer, n_positions: int | None = None) -> PositionalStructure:
    """PCA of W_pos (first `n_positions` rows): how many directions code position, and which
    positions carry a learned embedding at all."""
    W = model.W_pos.detach()[:n_positions].double()
    centred = W - W.mean(0, keepdim=True)
    s = torch.linalg.svdvals(centred)
    var = s.pow(2) / s.pow(2).sum().clamp(min=1e-30)
    p = s / s.sum().clamp(min=1e-30)
    entropy = -(p * p.clamp(min=1e-30).log()).sum()
    dims = int((var.cumsum(0) < 0.9).sum().item()) + 1
    return PositionalStructure(s, var, entropy.exp().item(), min(dims, len(s)), centred.norm(dim=1))
