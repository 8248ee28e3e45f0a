"""TransformerLens 2.x methods of `HookedTransformer` that are not the forward pass: `set_use_*` switches,
weight processing on a loaded model, token directions, labels. A mixin, so transformer.py stays the model."""

from __future__ import annotations

import copy
from typing import Any

import torch

from .losses import lm_cross_entropy_loss
from .norms import LayerNorm, LayerNormPre, make_norm


class TransformerLensMethods:
    """Mixed into `HookedTransformer`; every method reads `self.cfg` and the model's modules."""

    cfg: Any
    tokenizer: Any

    # ---- switches (TransformerLens's set_use_*) ---------------------------------------------------
    def set_use_attn_result(self, use_attn_result: bool) -> None:
        """Compute each head's write to the stream, hook_result [batch, pos, head, d_model] (memory-hungry)."""
        self.cfg.use_attn_result = _flag("use_attn_result", use_attn_result)

    def set_use_split_qkv_input(self, use_split_qkv_input: bool) -> None:
        """Separate per-head query/key/value inputs hook_q_input / hook_k_input / hook_v_input (path patching)."""
        use_split_qkv_input = _flag("use_split_qkv_input", use_split_qkv_input)
        if use_split_qkv_input and self.cfg.use_attn_in:
            raise ValueError("use_split_qkv_input and use_attn_in are exclusive: call set_use_attn_in(False) first")
        self.cfg.use_split_qkv_input = use_split_qkv_input

    def set_use_attn_in(self, use_attn_in: bool) -> None:
        """One per-head attention input, hook_attn_in [batch, pos, head, d_model]."""
        use_attn_in = _flag("use_attn_in", use_attn_in)
        if use_attn_in and self.cfg.n_key_value_heads is not None:
            raise ValueError("use_attn_in is not defined for grouped-query attention: use set_use_split_qkv_input")
        if use_attn_in and self.cfg.use_split_qkv_input:
            raise ValueError("use_attn_in and use_split_qkv_input are exclusive: call set_use_split_qkv_input(False)")
        self.cfg.use_attn_in = use_attn_in

    def set_use_hook_mlp_in(self, use_hook_mlp_in: bool) -> None:
        """A copy of the MLP's input stream, hook_mlp_in [batch, pos, d_model]."""
        use_hook_mlp_in = _flag("use_hook_mlp_in", use_hook_mlp_in)
        if use_hook_mlp_in and self.cfg.attn_only:
            raise ValueError("set_use_hook_mlp_in: this model is attention-only and has no MLP input")
        self.cfg.use_hook_mlp_in = use_hook_mlp_in

    def set_ungroup_grouped_query_attention(self, ungroup_grouped_query_attention: bool) -> None:
        """Keys/values per query head in hooks and cache (grouped-query models); numbers are unchanged."""
        ungroup = _flag("ungroup_grouped_query_attention", ungroup_grouped_query_attention)
        self.cfg.ungroup_grouped_query_attention = ungroup
        for block in self.blocks:
            attn = block.attn
            attn.group = 1 if ungroup else attn.kv_group
            attn.n_kv_inputs = self.cfg.n_heads if ungroup else self.cfg.n_kv_heads

    # ---- tokens and labels --------------------------------------------------------------------------
    def tokens_to_residual_directions(self, tokens: str | int | list | torch.Tensor) -> torch.Tensor:
        """Unembedding directions W_U[:, token]: [d_model] for one token, [..., d_model] for ids [...].

        A string must be a single token (needs the tokenizer); a list of strings gives [n, d_model]."""
        if isinstance(tokens, str) or (isinstance(tokens, list) and tokens and isinstance(tokens[0], str)):
            if self.tokenizer is None:
                raise TypeError("pass token ids: this model has no tokenizer to turn strings into tokens")
            words = [tokens] if isinstance(tokens, str) else tokens
            ids = [self.to_single_token(word) for word in words]
            tokens = ids[0] if isinstance(tokens, str) else ids
        tokens = torch.as_tensor(tokens, device=self.W_U.device)
        return self.W_U[:, tokens].movedim(0, -1)

    def to_single_str_token(self, int_token: int) -> str:
        """The string of one token id."""
        if not isinstance(int_token, int):
            raise TypeError(f"to_single_str_token takes one int token id, got {type(int_token).__name__}")
        return self.to_str_tokens(torch.tensor([int_token]))[0]

    def all_head_labels(self) -> list[str]:
        """'L{layer}H{head}' for every head, layer-major (TransformerLens's labels)."""
        return [f"L{layer}H{head}" for layer in range(self.cfg.n_layers) for head in range(self.cfg.n_heads)]

    def loss_fn(
        self,
        logits: torch.Tensor,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        per_token: bool = False,
    ) -> torch.Tensor:
        """Next-token cross-entropy (see `lm_cross_entropy_loss`)."""
        return lm_cross_entropy_loss(logits, tokens.to(logits.device), attention_mask, per_token)

    def all_composition_scores(self, mode: str) -> torch.Tensor:
        """Composition scores of every head pair [left_layer, left_head, right_layer, right_head]
        (TransformerLens's method): mode "Q", "K" or "V" composes the left head's OV circuit into the right
        head's QK (Q), QK^T (K) or OV (V); pairs whose right head is not in a later layer are 0."""
        from ..utils import composition_scores

        rights = {"Q": lambda: self.QK, "K": lambda: self.QK.T, "V": lambda: self.OV}
        if mode not in rights:
            raise ValueError(f"all_composition_scores: mode={mode!r} is invalid: expected 'Q', 'K' or 'V'")
        scores = composition_scores(self.OV, rights[mode](), broadcast_dims=True)
        layers = torch.arange(self.cfg.n_layers, device=scores.device)
        later = layers[:, None, None, None] < layers[None, None, :, None]  # right layer after left layer
        return torch.where(later, scores, torch.zeros_like(scores))

    # ---- devices -----------------------------------------------------------------------------------
    def move_model_modules_to_device(self) -> None:
        """Move every module to `cfg.device` (one device: circuitlab does not split a model over several)."""
        self.to(self.cfg.device or "cpu")

    # ---- weight processing on a loaded model (TransformerLens's state-dict methods) ------------------
    def _process_copy(self, step: str, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        from ..loading import processing

        state = dict(state_dict)
        processing.STEPS[step](state, copy.deepcopy(self.cfg))
        return state

    def fold_layer_norm(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The state dict with norm weights folded into the next layer (the model itself is unchanged)."""
        return self._process_copy("fold_ln", state_dict)

    def center_writing_weights(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self._process_copy("center_writing_weights", state_dict)

    def center_unembed(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self._process_copy("center_unembed", state_dict)

    def fold_value_biases(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self._process_copy("fold_value_biases", state_dict)

    def refactor_factored_attn_matrices(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self._process_copy("refactor_factored_attn_matrices", state_dict)

    def process_weights_(
        self,
        fold_ln: bool = True,
        center_writing_weights: bool = True,
        center_unembed: bool = True,
        refactor_factored_attn_matrices: bool = False,
        fold_value_biases: bool = True,
    ) -> None:
        """Process this model's weights in place (logits unchanged); folded norms become weightless.

        Hooks on the replaced norm modules are dropped, as TransformerLens does."""
        from ..loading.processing import process_weights

        state = {k: v.detach().float().clone() for k, v in self.state_dict().items()}
        dtype = self.cfg.dtype
        process_weights(
            state,
            self.cfg,
            fold_ln=fold_ln,
            center_writing_weights=center_writing_weights,
            center_unembed=center_unembed,
            fold_value_biases=fold_value_biases,
            refactor_factored_attn_matrices=refactor_factored_attn_matrices,
        )
        if fold_ln:  # the config now says LNPre / RMSPre: rebuild the norms without weights
            device = self.device
            for block in self.blocks:
                block.ln1 = make_norm(self.cfg).to(device)
                if hasattr(block, "ln2"):
                    block.ln2 = make_norm(self.cfg).to(device)
                if hasattr(block, "mlp") and hasattr(block.mlp, "ln"):
                    kind = LayerNorm if self.cfg.normalization_type == "LN" else LayerNormPre
                    block.mlp.ln = kind(self.cfg, self.cfg.d_mlp).to(device)
            if hasattr(self, "ln_final"):
                self.ln_final = make_norm(self.cfg).to(device)
            self.setup()
        self.load_state_dict({k: v.to(dtype) for k, v in state.items()})


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value
