"""Weight processing for interpretability (TransformerLens, Elhage et al. 2021), on our state dict.

Each step leaves the log-probabilities unchanged (`center_unembed` shifts every logit of a position by
the same amount); each is vectorised over layers and heads (per-layer parameters are stacked first).
- `fold_layer_norm`: a norm's weight (and LayerNorm's bias) moves into the linear maps that read it;
  the norms become weightless (LN -> LNPre, RMS -> RMSPre). For LayerNorm, whose output has zero mean,
  the reading weights are also centred over d_model.
- `center_writing_weights`: everything that writes to the residual stream (W_E, W_pos, W_O, b_O, W_out,
  b_out) loses its mean over d_model. Valid only when every reader is a LayerNorm (it removes the mean):
  a no-op for RMSNorm models or models without norms.
- `center_unembed`: W_U and b_U lose their mean over the vocabulary.
- `fold_value_biases`: b_V moves into b_O (each attention row sums to one), b_V becomes zero.
- `refactor_factored_attn_matrices` (off by default, as in TransformerLens): W_Q, W_K (with their biases
  as an extra input row) become the balanced SVD factors U sqrt(S), V sqrt(S) of W_QK, and W_V, W_O become
  U S and V of W_OV (b_V folded into b_O first), so W_O is orthonormal. Keeps every logit.
"""

from __future__ import annotations

import torch

from ..model.config import HookedTransformerConfig

State = dict[str, torch.Tensor]


def _stack(state: State, name: str, n_layers: int) -> torch.Tensor:
    return torch.stack([state[name.format(l=layer)] for layer in range(n_layers)])  # [layer, ...]


def _unstack(state: State, name: str, values: torch.Tensor) -> None:
    for layer, value in enumerate(values.unbind(0)):
        state[name.format(l=layer)] = value.contiguous()


def _pop_stack(state: State, name: str, n_layers: int) -> torch.Tensor:
    values = _stack(state, name, n_layers)
    for layer in range(n_layers):
        del state[name.format(l=layer)]
    return values


def fold_layer_norm(state: State, cfg: HookedTransformerConfig) -> None:
    """Fold ln1 into W_Q/W_K/W_V, ln2 into the MLP's input maps, ln_final into W_U; norms become weightless."""
    if cfg.normalization_type not in ("LN", "RMS"):
        return  # already folded, or no norms at all
    layer_norm = cfg.normalization_type == "LN"
    n, kv = cfg.n_layers, "_" if cfg.n_key_value_heads is not None else ""

    def fold(w: torch.Tensor, b: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor | None, axis: int):
        """weight [layer, ..., d_model (at axis), ...]; w, b [layer, d_model]. Returns (weight, bias)."""
        shape = [1] * weight.ndim
        shape[0], shape[axis] = n, cfg.d_model
        if b is not None:
            extra = (weight * b.view(shape)).sum(axis)  # the norm's bias, read through the weight
            bias = extra if bias is None else bias + extra
        weight = weight * w.view(shape)
        if layer_norm:  # the normalised input has zero mean: the weights' mean over d_model reads nothing
            weight = weight - weight.mean(axis, keepdim=True)
        return weight, bias

    w1 = _pop_stack(state, "blocks.{l}.ln1.w", n)
    b1 = _pop_stack(state, "blocks.{l}.ln1.b", n) if layer_norm else None
    for x in "QKV":
        prefix = "" if x == "Q" else kv
        W_name, b_name = f"blocks.{{l}}.attn.{prefix}W_{x}", f"blocks.{{l}}.attn.{prefix}b_{x}"
        W, b = fold(
            w1, b1, _stack(state, W_name, n), _stack(state, b_name, n), axis=2
        )  # [layer, head, d_model, d_head]
        _unstack(state, W_name, W)
        _unstack(state, b_name, b)
    if not cfg.attn_only:
        w2 = _pop_stack(state, "blocks.{l}.ln2.w", n)
        b2 = _pop_stack(state, "blocks.{l}.ln2.b", n) if layer_norm else None
        W_in, b_in = fold(w2, b2, _stack(state, "blocks.{l}.mlp.W_in", n), None, axis=1)  # [layer, d_model, d_mlp]
        if cfg.gated_mlp:
            # TransformerLens's gated MLP adds b_in after the product: the folded biases enter each branch.
            if layer_norm:
                raise ValueError("fold_ln for a gated MLP after LayerNorm is not supported (its branches have no bias)")
            W_gate, _ = fold(w2, None, _stack(state, "blocks.{l}.mlp.W_gate", n), None, axis=1)
            _unstack(state, "blocks.{l}.mlp.W_gate", W_gate)
        else:
            b_in = _stack(state, "blocks.{l}.mlp.b_in", n) + (b_in if b_in is not None else 0)
            _unstack(state, "blocks.{l}.mlp.b_in", b_in)
        _unstack(state, "blocks.{l}.mlp.W_in", W_in)
        if cfg.act_fn == "solu_ln" and layer_norm:  # SoLU's own LayerNorm folds into W_out
            w_mid, b_mid = _pop_stack(state, "blocks.{l}.mlp.ln.w", n), _pop_stack(state, "blocks.{l}.mlp.ln.b", n)
            W_out = _stack(state, "blocks.{l}.mlp.W_out", n)
            b_out = _stack(state, "blocks.{l}.mlp.b_out", n) + torch.einsum("lm,lmd->ld", b_mid, W_out)
            _unstack(state, "blocks.{l}.mlp.W_out", W_out * w_mid[:, :, None])
            _unstack(state, "blocks.{l}.mlp.b_out", b_out)
    w_f = state.pop("ln_final.w")
    W_U = state["unembed.W_U"]
    if layer_norm:
        state["unembed.b_U"] = state["unembed.b_U"] + state.pop("ln_final.b") @ W_U
    W_U = W_U * w_f[:, None]
    state["unembed.W_U"] = W_U - W_U.mean(0, keepdim=True) if layer_norm else W_U
    cfg.normalization_type = "LNPre" if layer_norm else "RMSPre"


def center_writing_weights(state: State, cfg: HookedTransformerConfig) -> None:
    """Remove the mean over d_model from every weight and bias that writes to the residual stream."""
    if cfg.normalization_type not in ("LN", "LNPre"):
        return  # only a reader that removes the mean makes this free: RMSNorm does not
    n = cfg.n_layers
    for name in ("embed.W_E", "pos_embed.W_pos"):
        if name in state:
            state[name] = state[name] - state[name].mean(-1, keepdim=True)
    names = ["blocks.{l}.attn.W_O", "blocks.{l}.attn.b_O"]
    if not cfg.attn_only:
        names += ["blocks.{l}.mlp.W_out", "blocks.{l}.mlp.b_out"]
    for name in names:
        values = _stack(state, name, n)
        _unstack(state, name, values - values.mean(-1, keepdim=True))


def center_unembed(state: State, cfg: HookedTransformerConfig) -> None:
    """Remove the mean over the vocabulary from W_U and b_U: each position's logits shift by one constant."""
    state["unembed.W_U"] = state["unembed.W_U"] - state["unembed.W_U"].mean(-1, keepdim=True)
    state["unembed.b_U"] = state["unembed.b_U"] - state["unembed.b_U"].mean()


def fold_value_biases(state: State, cfg: HookedTransformerConfig) -> None:
    """b_O += sum over heads of b_V[head] @ W_O[head]; b_V = 0 (each head's pattern rows sum to one)."""
    n, kv = cfg.n_layers, "_" if cfg.n_key_value_heads is not None else ""
    b_V = _stack(state, f"blocks.{{l}}.attn.{kv}b_V", n)  # [layer, kv_head, d_head]
    b_V_per_head = b_V.repeat_interleave(cfg.n_heads // cfg.n_kv_heads, dim=1)  # query head i reads kv head i // g
    W_O = _stack(state, "blocks.{l}.attn.W_O", n)  # [layer, head, d_head, d_model]
    b_O = _stack(state, "blocks.{l}.attn.b_O", n) + torch.einsum("lhe,lhed->ld", b_V_per_head, W_O)
    _unstack(state, "blocks.{l}.attn.b_O", b_O)
    _unstack(state, f"blocks.{{l}}.attn.{kv}b_V", torch.zeros_like(b_V))


def refactor_factored_attn_matrices(state: State, cfg: HookedTransformerConfig) -> None:
    """Balanced QK and orthonormal-W_O OV factors per head (TransformerLens's refactoring), in place."""
    if cfg.positional_embedding_type == "rotary":
        raise ValueError("refactor_factored_attn_matrices needs a position-free QK circuit: this model is rotary")
    if cfg.n_key_value_heads is not None:
        raise ValueError("refactor_factored_attn_matrices is not defined for grouped-query attention (shared keys)")
    from ..model.factored_matrix import FactoredMatrix

    n = cfg.n_layers
    name = "blocks.{l}.attn."
    W_Q, b_Q = _stack(state, name + "W_Q", n), _stack(state, name + "b_Q", n)  # [layer, head, d_model, d_head]
    W_K, b_K = _stack(state, name + "W_K", n), _stack(state, name + "b_K", n)
    W_Q_eff = torch.cat([W_Q, b_Q[:, :, None, :]], dim=2)  # [layer, head, d_model + 1, d_head]: input 1 -> bias
    W_K_eff = torch.cat([W_K, b_K[:, :, None, :]], dim=2)
    Q_even, K_even_T = FactoredMatrix(W_Q_eff, W_K_eff.transpose(-1, -2)).make_even().pair
    K_even = K_even_T.transpose(-1, -2)
    _unstack(state, name + "W_Q", Q_even[:, :, :-1])
    _unstack(state, name + "b_Q", Q_even[:, :, -1])
    _unstack(state, name + "W_K", K_even[:, :, :-1])
    _unstack(state, name + "b_K", K_even[:, :, -1])
    W_V, W_O = _stack(state, name + "W_V", n), _stack(state, name + "W_O", n)  # [layer, head, d_model, d_head]
    b_V, b_O = _stack(state, name + "b_V", n), _stack(state, name + "b_O", n)
    _unstack(state, name + "b_O", b_O + torch.einsum("lhe,lhed->ld", b_V, W_O))
    _unstack(state, name + "b_V", torch.zeros_like(b_V))
    U, S, Vh = FactoredMatrix(W_V, W_O).svd()
    _unstack(state, name + "W_V", U * S[..., None, :])
    _unstack(state, name + "W_O", Vh.transpose(-1, -2))


STEPS = {  # TransformerLens's order
    "fold_ln": fold_layer_norm,
    "center_writing_weights": center_writing_weights,
    "center_unembed": center_unembed,
    "fold_value_biases": fold_value_biases,
    "refactor_factored_attn_matrices": refactor_factored_attn_matrices,
}


def process_weights(
    state: State,
    cfg: HookedTransformerConfig,
    *,
    fold_ln: bool = True,
    center_writing_weights: bool = True,
    center_unembed: bool = True,
    fold_value_biases: bool = True,
    refactor_factored_attn_matrices: bool = False,
) -> None:
    """Apply the chosen steps in order, in place (on `state`, and on `cfg.normalization_type`)."""
    chosen = dict(
        fold_ln=fold_ln,
        center_writing_weights=center_writing_weights,
        center_unembed=center_unembed,
        fold_value_biases=fold_value_biases,
        refactor_factored_attn_matrices=refactor_factored_attn_matrices,
    )
    for name, step in STEPS.items():
        if chosen[name]:
            step(state, cfg)
