"""Direct logit attribution (per head, layer, neuron), logit lens and residual-stream decomposition.

All built on an `ActivationCache` of one run. The final LayerNorm is linearised with the scale cached
from that run, and its weight and bias are applied (so no weight folding is needed): a component c of
the final residual stream at the read position contributes `c . u`, where
`u = centre(w * (W_U[:, answer] - W_U[:, distractor])) / scale`, and the biases (ln_final.b, b_U)
add a constant, labelled "bias". The components, remainder and bias sum exactly to the model's logit
difference (logit of the answer when no distractor is given) for each batch row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .metrics import Pos, select_pos

if TYPE_CHECKING:
    from ..model.cache import ActivationCache
    from ..model.transformer import HookedTransformer

Ids = int | torch.Tensor


def logit_direction(model: HookedTransformer, answer: Ids, distractor: Ids | None = None) -> torch.Tensor:
    """W_U[:, answer] - W_U[:, distractor]: [d_model], or [batch, d_model] for per-row ids [batch]."""
    direction = model.tokens_to_residual_directions(answer)
    if distractor is not None:
        direction = direction - model.tokens_to_residual_directions(distractor)
    return direction.detach()


def _readout(
    cache: ActivationCache, answer: Ids, distractor: Ids | None, pos: Pos
) -> tuple[torch.Tensor, torch.Tensor]:
    """(u [batch, d_model], constant [batch]): the logit (difference) at `pos` is final_resid . u + constant."""
    model = cache.model
    cfg = model.cfg
    n_batch = cache["hook_embed"].shape[0]
    direction = logit_direction(model, answer, distractor).expand(n_batch, cfg.d_model)  # [batch, d_model]
    b_U = model.b_U.detach()
    answer_ids = torch.as_tensor(answer, device=b_U.device)
    constant = b_U[answer_ids] - (b_U[torch.as_tensor(distractor, device=b_U.device)] if distractor is not None else 0)
    constant = constant.expand(n_batch).clone()  # [batch]
    norm = cfg.normalization_type
    if norm is None:
        return direction, constant
    ln = model.ln_final
    v = direction * ln.w.detach() if hasattr(ln, "w") else direction
    if norm in ("LN", "LNPre"):
        v = v - v.mean(-1, keepdim=True)  # (c - mean c) . v == c . (v - mean v)
    if hasattr(ln, "b"):
        constant = constant + direction @ ln.b.detach()
    scale = select_pos(cache["ln_final.hook_scale"], pos)  # [batch, 1]
    return v / scale, constant


def _final_resid(cache: ActivationCache, pos: Pos) -> torch.Tensor:
    return select_pos(cache["resid_post", cache.model.cfg.n_layers - 1], pos)  # [batch, d_model]


def _z_at(cache: ActivationCache, layer: int, pos: Pos) -> torch.Tensor:
    """hook_z at one position per row: [batch, pos, head, d_head] -> [batch, head, d_head]."""
    z = cache["z", layer]
    return select_pos(z.flatten(-2), pos).unflatten(-1, z.shape[-2:])


def direct_logit_attribution(
    cache: ActivationCache,
    answer: Ids,
    distractor: Ids | None = None,
    pos: Pos = -1,
    by: str = "head",
) -> tuple[torch.Tensor, list[str]]:
    """Each component's direct contribution to logit[answer] - logit[distractor] at `pos`: [component, batch].

    by "head": "L{l}H{h}" for every head, then "remainder" (embeddings, b_O, MLPs) and "bias";
    by "neuron": "L{l}N{n}" for every MLP neuron, then "remainder" and "bias";
    by "layer": the residual-stream decomposition "embed", "pos_embed", "{l}_attn_out", "{l}_mlp_out", "bias".
    The components sum to the model's actual logit difference in each row.
    """
    model = cache.model
    cfg = model.cfg
    u, constant = _readout(cache, answer, distractor, pos)
    if by == "layer":
        stack, labels = cache.decompose_resid(return_labels=True)  # [component, batch, pos, d_model]
        attrs = (select_pos(stack, pos) * u).sum(-1)  # [component, batch]
    elif by == "head":
        attrs = torch.stack(
            [
                torch.einsum("bhe,hed,bd->hb", _z_at(cache, l, pos), block.attn.W_O.detach(), u)  # [head, batch]
                for l, block in enumerate(model.blocks)
            ]
        ).flatten(0, 1)  # [layer * head, batch]
        labels = [f"L{l}H{h}" for l in range(cfg.n_layers) for h in range(cfg.n_heads)]
    elif by == "neuron":
        if cfg.attn_only:
            raise ValueError("by='neuron' needs MLPs: this model is attention-only")
        attrs = torch.stack(
            [
                select_pos(cache["post", l], pos).T * (block.mlp.W_out.detach() @ u.T)  # [neuron, batch]
                for l, block in enumerate(model.blocks)
            ]
        ).flatten(0, 1)  # [layer * neuron, batch]
        labels = [f"L{l}N{n}" for l in range(cfg.n_layers) for n in range(cfg.d_mlp)]
    else:
        raise ValueError(f"by={by!r} is invalid: expected 'head', 'neuron' or 'layer'")
    if by != "layer":
        remainder = (_final_resid(cache, pos) * u).sum(-1) - attrs.sum(0)  # [batch]
        attrs = torch.cat([attrs, remainder[None]])
        labels = [*labels, "remainder"]
    return torch.cat([attrs, constant[None].to(attrs.dtype)]), [*labels, "bias"]


def head_dla(cache: ActivationCache, answer: Ids, distractor: Ids | None = None, pos: Pos = -1) -> torch.Tensor:
    """Direct logit attribution of each head, averaged over the batch: [layer, head]."""
    cfg = cache.model.cfg
    attrs, _ = direct_logit_attribution(cache, answer, distractor, pos, by="head")
    return attrs[: cfg.n_layers * cfg.n_heads].mean(-1).view(cfg.n_layers, cfg.n_heads)


def neuron_dla(cache: ActivationCache, answer: Ids, distractor: Ids | None = None, pos: Pos = -1) -> torch.Tensor:
    """Direct logit attribution of each MLP neuron, averaged over the batch: [layer, neuron]."""
    cfg = cache.model.cfg
    attrs, _ = direct_logit_attribution(cache, answer, distractor, pos, by="neuron")
    return attrs[: cfg.n_layers * cfg.d_mlp].mean(-1).view(cfg.n_layers, cfg.d_mlp)


def layer_dla(
    cache: ActivationCache, answer: Ids, distractor: Ids | None = None, pos: Pos = -1
) -> tuple[torch.Tensor, list[str]]:
    """Residual-stream decomposition, averaged over the batch: ([component], labels), ending with "bias"."""
    attrs, labels = direct_logit_attribution(cache, answer, distractor, pos, by="layer")
    return attrs.mean(-1), labels


def logit_lens(
    cache: ActivationCache,
    answer: Ids | None = None,
    distractor: Ids | None = None,
    pos: Pos = -1,
    incl_mid: bool = False,
    use_final_scale: bool = False,
) -> tuple[torch.Tensor, list[str]]:
    """Read the residual stream before each layer (and after the last, "final_post") through the unembedding.

    Without `answer`: logits [component, batch, d_vocab_out]. With it: logit[answer] (- logit[distractor])
    [component, batch]. The final LayerNorm is recomputed on each partial stream (the usual logit lens),
    or, with `use_final_scale`, linearised with the final run's scale (then the entries are the running
    sums of the "layer" attribution). The last entry is the model's own output either way.
    """
    model = cache.model
    stack, labels = cache.accumulated_resid(incl_mid=incl_mid, return_labels=True)  # [component, batch, pos, d]
    stack = select_pos(stack, pos)  # [component, batch, d_model]
    if use_final_scale:
        if answer is None:
            raise ValueError("use_final_scale needs an answer (it linearises the read-out of one logit direction)")
        u, constant = _readout(cache, answer, distractor, pos)
        return (stack * u).sum(-1) + constant, labels
    with torch.no_grad():
        normed = model.ln_final(stack) if model.cfg.normalization_type is not None else stack
        logits = model.unembed(normed)  # [component, batch, d_vocab_out]
    if answer is None:
        return logits, labels
    n_batch = logits.shape[1]

    def logit_of(ids: Ids) -> torch.Tensor:
        ids = torch.as_tensor(ids, device=logits.device).long().expand(n_batch)
        return logits.gather(-1, ids[None, :, None].expand(logits.shape[0], n_batch, 1)).squeeze(-1)

    values = logit_of(answer) - (logit_of(distractor) if distractor is not None else 0)
    return values, labels
