"""`HookedTransformer`: a decoder-only transformer whose every activation is a named hook point.

The classic TransformerLens surface: `model(tokens, return_type=...)`, `run_with_cache`,
`run_with_hooks`, `hooks(...)`, stacked weight properties (`W_Q[layer, head, d_model, d_head]`, ...)
and `QK` / `OV` circuits as `FactoredMatrix`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from .block import TransformerBlock
from .cache import ActivationCache, accumulated_bias
from .config import HookedTransformerConfig
from .embed import Embed, PosEmbed, Unembed
from .factored_matrix import FactoredMatrix
from .hook_points import HookedRootModule, HookPoint, NameFilter
from .losses import lm_cross_entropy_loss
from .norms import make_norm

RETURN_TYPES = ("logits", "loss", "both", None)


class HookedTransformer(HookedRootModule):
    def __init__(self, cfg: HookedTransformerConfig | dict[str, Any], move_to_device: bool = True) -> None:
        super().__init__()
        if isinstance(cfg, dict):
            cfg = HookedTransformerConfig.from_dict(cfg)
        if not isinstance(cfg, HookedTransformerConfig):
            raise TypeError(f"HookedTransformer needs a HookedTransformerConfig or a dict, got {type(cfg).__name__}")
        self.cfg = cfg
        self.tokenizer: Any = None  # a `transformers` tokenizer, set by from_pretrained or set_tokenizer
        self.embed = Embed(cfg)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        if cfg.positional_embedding_type == "standard":
            self.pos_embed = PosEmbed(cfg)
            self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]
        if cfg.use_hook_tokens:
            self.hook_tokens = HookPoint()  # [batch, pos]
        self.blocks = nn.ModuleList([TransformerBlock(cfg, layer) for layer in range(cfg.n_layers)])
        if cfg.normalization_type is not None:
            self.ln_final = make_norm(cfg)
        self.unembed = Unembed(cfg)
        if cfg.init_weights:
            self.init_weights()
        self.setup()
        if move_to_device and cfg.device is not None:
            self.to(cfg.device)

    def init_weights(self) -> None:
        """Weights ~ N(0, init_range), biases 0, norm weights 1; `cfg.seed` makes it reproducible."""
        gen = torch.Generator().manual_seed(self.cfg.seed) if self.cfg.seed is not None else None
        with torch.no_grad():
            for name, param in self.named_parameters():
                leaf = name.rsplit(".", 1)[-1]
                if leaf.lstrip("_").startswith("W_"):
                    values = torch.randn(param.shape, generator=gen, dtype=torch.float64) * self.cfg.init_range
                    param.copy_(values.to(param.dtype))
                elif leaf == "w":
                    param.fill_(1.0)
                else:
                    param.zero_()

    @property
    def device(self) -> torch.device:
        return self.embed.W_E.device

    # ---- forward ---------------------------------------------------------------------------------
    def _check_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor):
            raise TypeError(
                f"model input must be a tensor of token ids [batch, pos], got {type(tokens).__name__}"
                " (strings need a tokenizer: use model.to_tokens once a pretrained model is loaded)"
            )
        if tokens.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"token ids must be an integer tensor, got dtype {tokens.dtype}")
        if tokens.ndim == 1:
            tokens = tokens[None]
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be [batch, pos] (or [pos]), got shape {tuple(tokens.shape)}")
        if tokens.shape[1] > self.cfg.n_ctx:
            raise ValueError(f"sequence of {tokens.shape[1]} tokens is longer than n_ctx={self.cfg.n_ctx}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.cfg.d_vocab):
            raise ValueError(
                f"token ids must lie in [0, d_vocab={self.cfg.d_vocab}), got range "
                f"[{int(tokens.min())}, {int(tokens.max())}]"
            )
        return tokens.to(self.device, torch.long)

    def forward(
        self,
        tokens: torch.Tensor | str | list[str],
        return_type: str | None = "logits",
        loss_per_token: bool = False,
        stop_at_layer: int | None = None,
    ) -> Any:
        """Run on token ids [batch, pos] (or text, when the model has a tokenizer: see `to_tokens`).

        return_type: "logits" [batch, pos, d_vocab_out], "loss" (mean next-token loss, or [batch, pos-1]
        with `loss_per_token`), "both" (logits, loss), or None. `stop_at_layer=l` returns the residual
        stream entering block l instead (for patching and probes).
        """
        if return_type not in RETURN_TYPES:
            raise ValueError(f"return_type={return_type!r} is invalid: expected one of {list(RETURN_TYPES)}")
        is_text = isinstance(tokens, str) or (isinstance(tokens, list) and tokens and isinstance(tokens[0], str))
        if is_text and self.tokenizer is not None:
            tokens = self.to_tokens(tokens)
        tokens = self._check_tokens(tokens)
        if self.cfg.use_hook_tokens:
            tokens = self.hook_tokens(tokens)
        resid = self.hook_embed(self.embed(tokens))  # [batch, pos, d_model]
        if self.cfg.positional_embedding_type == "standard":
            resid = resid + self.hook_pos_embed(self.pos_embed(tokens))
        for block in self.blocks[:stop_at_layer]:
            resid = block(resid)
        if stop_at_layer is not None:
            return resid
        if self.cfg.normalization_type is not None:
            resid = self.ln_final(resid)
        logits = self.unembed(resid)  # [batch, pos, d_vocab_out]
        if return_type == "logits":
            return logits
        if return_type is None:
            return None
        loss = lm_cross_entropy_loss(logits, tokens, per_token=loss_per_token)
        return loss if return_type == "loss" else (logits, loss)

    def run_with_cache(
        self,
        *model_args: Any,
        names_filter: NameFilter = None,
        device: str | torch.device | None = None,
        remove_batch_dim: bool = False,
        incl_bwd: bool = False,
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
        return_cache_object: bool = True,
        **model_kwargs: Any,
    ) -> tuple[Any, ActivationCache | dict[str, torch.Tensor]]:
        """Run once and return (output, cache of every selected activation).

        names_filter: None (all), a hook name, a list of names, or fn(name) -> bool. With `incl_bwd`
        the output (a scalar, e.g. return_type="loss") is back-propagated and gradients are cached too.
        """
        cache, fwd, bwd = self.get_caching_hooks(names_filter, incl_bwd, device, remove_batch_dim)
        with self.hooks(fwd, bwd, reset_hooks_end=reset_hooks_end, clear_contexts=clear_contexts):
            out = self(*model_args, **model_kwargs)
            if incl_bwd:
                if not isinstance(out, torch.Tensor) or out.numel() != 1:
                    raise ValueError(
                        "incl_bwd=True back-propagates the output: it must be a scalar (return_type='loss')"
                    )
                out.backward()
        if return_cache_object:
            return out, ActivationCache(cache, self, has_batch_dim=not remove_batch_dim)
        return out, cache

    # Hook points that exist (as in TransformerLens) but only fire when a config flag is set.
    _FLAGGED_HOOKS: ClassVar[dict[str, str]] = {
        "attn.hook_result": "use_attn_result",
        "hook_attn_in": "use_attn_in",
        "hook_q_input": "use_split_qkv_input",
        "hook_k_input": "use_split_qkv_input",
        "hook_v_input": "use_split_qkv_input",
        "hook_mlp_in": "use_hook_mlp_in",
    }

    def silent_hook_reason(self, name: str) -> str | None:
        """Why hook point `name` never fires under this config, or None if it does fire."""
        for suffix, flag in self._FLAGGED_HOOKS.items():
            if name.endswith(suffix) and not getattr(self.cfg, flag):
                return f"{name} only runs with {flag}=True (set model.cfg.{flag} = True)"
        if self.cfg.attn_only and name.endswith("hook_mlp_out"):
            return f"{name} never runs: the model is attention-only"
        return None

    def add_hook(self, name: Any, hook: Any, dir: str = "fwd", **kwargs: Any) -> Any:
        if isinstance(name, str) and (reason := self.silent_hook_reason(name)):
            raise ValueError(f"cannot hook {reason}")
        return super().add_hook(name, hook, dir=dir, **kwargs)

    def filter_hook_names(self, names_filter: NameFilter) -> list[str]:
        names = super().filter_hook_names(names_filter)
        if names_filter is None or callable(names_filter):
            return [n for n in names if self.silent_hook_reason(n) is None]
        return names

    def accumulated_bias(self, layer: int, mlp_input: bool = False, include_mlp_biases: bool = True) -> torch.Tensor:
        """Sum of the b_O (and b_out) biases written before `layer`: [d_model] (see `cache.accumulated_bias`)."""
        return accumulated_bias(self, layer, mlp_input, include_mlp_biases)

    def tokens_to_residual_directions(self, tokens: int | torch.Tensor) -> torch.Tensor:
        """Unembedding directions W_U[:, token]: [..., d_model] for token ids [...]."""
        if isinstance(tokens, str):
            raise TypeError("pass token ids: this model has no tokenizer to turn strings into tokens")
        tokens = torch.as_tensor(tokens, device=self.W_U.device)
        return self.W_U[:, tokens].movedim(0, -1)

    # ---- weights, stacked over layers (TransformerLens shapes) ----------------------------------
    def _stack(self, get: Any) -> torch.Tensor:
        return torch.stack([get(block) for block in self.blocks], dim=0)

    def __getattr__(self, name: str) -> Any:
        # A property raising AttributeError lands here, so the reason is given here.
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("W_pos", "W_E_pos") and self.cfg.positional_embedding_type != "standard":
                pos = self.cfg.positional_embedding_type
                raise AttributeError(f"{name}: this model has no learned positional embedding ({pos!r})") from None
            if name in ("W_in", "b_in", "W_out", "b_out") and self.cfg.attn_only:
                raise AttributeError(f"{name}: this model is attention-only and has no MLP weights") from None
            raise

    @property
    def W_E(self) -> torch.Tensor:
        """[d_vocab, d_model]"""
        return self.embed.W_E

    @property
    def W_pos(self) -> torch.Tensor:
        """[n_ctx, d_model]"""
        return self.pos_embed.W_pos

    @property
    def W_E_pos(self) -> torch.Tensor:
        """[d_vocab + n_ctx, d_model]: token and position embeddings stacked."""
        return torch.cat([self.W_E, self.W_pos], dim=0)

    @property
    def W_U(self) -> torch.Tensor:
        """[d_model, d_vocab_out]"""
        return self.unembed.W_U

    @property
    def b_U(self) -> torch.Tensor:
        return self.unembed.b_U

    @property
    def W_Q(self) -> torch.Tensor:
        """[n_layers, n_heads, d_model, d_head]"""
        return self._stack(lambda b: b.attn.W_Q)

    @property
    def W_K(self) -> torch.Tensor:
        """[n_layers, n_heads, d_model, d_head] (grouped-query keys repeated per query head)"""
        return self._stack(lambda b: _per_query_head(b.attn, b.attn.kv_weights[0]))

    @property
    def W_V(self) -> torch.Tensor:
        """[n_layers, n_heads, d_model, d_head] (grouped-query values repeated per query head)"""
        return self._stack(lambda b: _per_query_head(b.attn, b.attn.kv_weights[2]))

    @property
    def W_O(self) -> torch.Tensor:
        """[n_layers, n_heads, d_head, d_model]"""
        return self._stack(lambda b: b.attn.W_O)

    @property
    def b_Q(self) -> torch.Tensor:
        """[n_layers, n_heads, d_head]"""
        return self._stack(lambda b: b.attn.b_Q)

    @property
    def b_K(self) -> torch.Tensor:
        return self._stack(lambda b: _per_query_head(b.attn, b.attn.kv_weights[1]))

    @property
    def b_V(self) -> torch.Tensor:
        return self._stack(lambda b: _per_query_head(b.attn, b.attn.kv_weights[3]))

    @property
    def b_O(self) -> torch.Tensor:
        """[n_layers, d_model]"""
        return self._stack(lambda b: b.attn.b_O)

    def _mlp_weight(self, name: str) -> torch.Tensor:
        return self._stack(lambda b: getattr(b.mlp, name))

    @property
    def W_in(self) -> torch.Tensor:
        """[n_layers, d_model, d_mlp]"""
        return self._mlp_weight("W_in")

    @property
    def b_in(self) -> torch.Tensor:
        return self._mlp_weight("b_in")

    @property
    def W_out(self) -> torch.Tensor:
        """[n_layers, d_mlp, d_model]"""
        return self._mlp_weight("W_out")

    @property
    def b_out(self) -> torch.Tensor:
        return self._mlp_weight("b_out")

    @property
    def QK(self) -> FactoredMatrix:
        """W_Q W_K^T per head: [n_layers, n_heads, d_model, d_model], factored."""
        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    @property
    def OV(self) -> FactoredMatrix:
        """W_V W_O per head: [n_layers, n_heads, d_model, d_model], factored."""
        return FactoredMatrix(self.W_V, self.W_O)

    # ---- pretrained models and tokenizers (circuitlab.loading, imported on first use) ---------------
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        fold_ln: bool = True,
        center_writing_weights: bool = True,
        center_unembed: bool = True,
        fold_value_biases: bool = True,
        dtype: torch.dtype | str = torch.float32,
        device: str | torch.device | None = None,
        revision: str | None = None,
        tokenizer: bool = True,
    ) -> HookedTransformer:
        """A Hugging Face causal LM (local folder in HF layout, or hub name), processed for interpretability.

        See `circuitlab.loading.from_pretrained`; supported: `circuitlab.loading.SUPPORTED`.
        """
        from ..loading import from_pretrained

        return from_pretrained(
            name_or_path,
            fold_ln=fold_ln,
            center_writing_weights=center_writing_weights,
            center_unembed=center_unembed,
            fold_value_biases=fold_value_biases,
            dtype=dtype,
            device=device,
            revision=revision,
            tokenizer=tokenizer,
        )

    @classmethod
    def from_pretrained_no_processing(cls, name_or_path: str | Path, **kwargs: Any) -> HookedTransformer:
        """`from_pretrained` with the weights exactly as stored (no folding or centring)."""
        from ..loading import from_pretrained_no_processing

        return from_pretrained_no_processing(name_or_path, **kwargs)

    @classmethod
    def from_hf_model(cls, hf_model: Any, tokenizer: Any = None, **kwargs: Any) -> HookedTransformer:
        """Convert a `transformers` model object in memory (same processing options as from_pretrained)."""
        from ..loading import from_hf_model

        return from_hf_model(hf_model, tokenizer, **kwargs)

    def set_tokenizer(self, tokenizer: Any) -> None:
        from ..loading.tokens import set_tokenizer

        set_tokenizer(self, tokenizer)

    def to_tokens(
        self,
        input: str | list[str],
        prepend_bos: bool | None = None,
        padding_side: str = "right",
        move_to_device: bool = True,
        truncate: bool = True,
    ) -> torch.Tensor:
        """Token ids [batch, pos] of a text or texts; BOS first unless prepend_bos=False."""
        from ..loading.tokens import to_tokens

        return to_tokens(self, input, prepend_bos, padding_side, move_to_device, truncate)

    def to_string(self, tokens: Any) -> str | list[str]:
        from ..loading.tokens import to_string

        return to_string(self, tokens)

    def to_str_tokens(self, input: Any, prepend_bos: bool | None = None) -> list[str] | list[list[str]]:
        from ..loading.tokens import to_str_tokens

        return to_str_tokens(self, input, prepend_bos)

    def to_single_token(self, string: str) -> int:
        from ..loading.tokens import to_single_token

        return to_single_token(self, string)

    def get_token_position(
        self, single_token: str | int, input: Any, mode: str = "first", prepend_bos: bool | None = None
    ) -> int:
        from ..loading.tokens import get_token_position

        return get_token_position(self, single_token, input, mode, prepend_bos)

    def generate(self, input: Any = "", max_new_tokens: int = 10, **kwargs: Any) -> Any:
        """Greedy (do_sample=False) or sampled continuation; see `circuitlab.loading.generate.generate`."""
        from ..loading.generate import generate

        return generate(self, input, max_new_tokens, **kwargs)

    # ---- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write `path/config.json` and `path/model.safetensors`, crash-safe, touching nothing else; a folder
        that is not a circuitlab model folder is refused unless `overwrite` (see `circuitlab.model.io`)."""
        from .io import save_model

        return save_model(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None) -> HookedTransformer:
        """Load a model written by `save`; a corrupt or mismatched checkpoint raises `CheckpointError`."""
        from .io import load_model

        return load_model(path, device=device)


def _per_query_head(attn: Any, kv_tensor: torch.Tensor) -> torch.Tensor:
    """[kv_head, ...] -> [head, ...]: query head i uses key/value head i // group."""
    return kv_tensor.repeat_interleave(attn.group, dim=0) if attn.group > 1 else kv_tensor
