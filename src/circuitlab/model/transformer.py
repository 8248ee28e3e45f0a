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
from .kv_cache import HookedTransformerKeyValueCache
from .losses import lm_cross_entropy_loss
from .masks import get_attention_mask
from .norms import make_norm
from .tl_api import TransformerLensMethods

RETURN_TYPES = ("logits", "loss", "both", None)


class HookedTransformer(TransformerLensMethods, HookedRootModule):
    def __init__(
        self,
        cfg: HookedTransformerConfig | dict[str, Any],
        tokenizer: Any = None,
        move_to_device: bool = True,
        default_padding_side: str = "right",
    ) -> None:
        """A model of `cfg` (a config or its dict). `tokenizer`: a `transformers` tokenizer; without one,
        `cfg.tokenizer_name` naming a local folder with tokenizer files loads it. `d_vocab=-1` takes the
        vocabulary size from the tokenizer, as TransformerLens."""
        super().__init__()
        if isinstance(move_to_device, str) or not isinstance(move_to_device, bool):
            raise TypeError(
                f"HookedTransformer(cfg, tokenizer=None, move_to_device=True): move_to_device={move_to_device!r} "
                "must be True or False (the second argument is the tokenizer, as in TransformerLens)"
            )
        cfg = HookedTransformerConfig.unwrap(cfg)
        self.cfg = cfg
        self.tokenizer: Any = None  # a `transformers` tokenizer, set by from_pretrained or set_tokenizer
        if tokenizer is None and cfg.tokenizer_name is not None:
            from ..loading.tokens import local_tokenizer

            tokenizer = local_tokenizer(cfg.tokenizer_name)
        if cfg.d_vocab == -1:
            cfg.set_vocab_from(tokenizer)
        if tokenizer is not None:
            self.set_tokenizer(tokenizer, default_padding_side=default_padding_side)
        self.embed = Embed(cfg)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        if cfg.positional_embedding_type in ("standard", "shortformer"):
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
        input: torch.Tensor | str | list[str],
        return_type: str | None = "logits",
        loss_per_token: bool = False,
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        start_at_layer: int | None = None,
        tokens: torch.Tensor | None = None,
        shortformer_pos_embed: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        stop_at_layer: int | None = None,
        past_kv_cache: HookedTransformerKeyValueCache | None = None,
    ) -> Any:
        """Run on token ids [batch, pos] (or text, when the model has a tokenizer: see `to_tokens`).

        TransformerLens 2.x's signature. return_type: "logits" [batch, pos, d_vocab_out], "loss" (mean
        next-token loss, or [batch, pos-1] with `loss_per_token`), "both" (logits, loss), or None.
        `attention_mask` [batch, pos] (1 real, 0 padding) is computed from the tokenizer for left padding.
        `start_at_layer=l` takes the residual stream entering block l as `input` (with `tokens` for a loss
        and `shortformer_pos_embed` / `attention_mask` where they apply); `stop_at_layer=l` returns the
        residual stream entering block l instead of logits (both accept negative indices).
        `past_kv_cache` (a `HookedTransformerKeyValueCache`) holds earlier positions' keys and values: the
        input is then only the new positions.
        """
        if return_type not in RETURN_TYPES:
            raise ValueError(f"return_type={return_type!r} is invalid: expected one of {list(RETURN_TYPES)}")
        if start_at_layer is None:
            residual, tokens, shortformer_pos_embed, attention_mask = self.input_to_embed(
                input, prepend_bos, padding_side, attention_mask, past_kv_cache
            )
        else:
            residual = self._check_residual(input, start_at_layer)
            if attention_mask is not None and not attention_mask.bool().all():
                attention_mask = attention_mask.to(residual.device)
            else:
                attention_mask = None  # all real: the unmasked path gives the same numbers
        layers = list(zip(range(self.cfg.n_layers), self.blocks, strict=True))[start_at_layer:stop_at_layer]
        for layer, block in layers:
            residual = block(
                residual,
                shortformer_pos_embed=shortformer_pos_embed,
                past_kv_cache_entry=past_kv_cache[layer] if past_kv_cache is not None else None,
                attention_mask=attention_mask,
            )  # [batch, pos, d_model]
        if stop_at_layer is not None:
            return residual
        if self.cfg.normalization_type is not None:
            residual = self.ln_final(residual)
        if return_type is None:
            return None
        logits = self.unembed(residual)  # [batch, pos, d_vocab_out]
        if return_type == "logits":
            return logits
        if tokens is None:
            raise ValueError(f"return_type={return_type!r} with start_at_layer needs the token ids: pass tokens=")
        if attention_mask is not None:
            attention_mask = attention_mask[:, -tokens.shape[1] :]  # the new positions (after a key/value cache)
        loss = lm_cross_entropy_loss(logits, tokens, attention_mask, per_token=loss_per_token)
        return loss if return_type == "loss" else (logits, loss)

    def input_to_embed(
        self,
        input: torch.Tensor | str | list[str],
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        attention_mask: torch.Tensor | None = None,
        past_kv_cache: HookedTransformerKeyValueCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(residual entering block 0, tokens, shortformer positional embedding or None, attention mask or None).

        The mask is [batch, cached + new positions]; None when every position is real (the fast path), as
        TransformerLens computes it only for left padding, an explicit mask or a key/value cache.
        """
        is_text = isinstance(input, str) or (isinstance(input, list) and input and isinstance(input[0], str))
        if is_text and self.tokenizer is not None:
            input = self.to_tokens(input, prepend_bos=prepend_bos, padding_side=padding_side)
        tokens = self._check_tokens(input)
        offset = self.get_pos_offset(past_kv_cache, tokens.shape[0])
        if offset + tokens.shape[1] > self.cfg.n_ctx:
            raise ValueError(
                f"{offset} cached + {tokens.shape[1]} new positions are longer than n_ctx={self.cfg.n_ctx}"
            )
        side = padding_side or getattr(self.tokenizer, "padding_side", "right")
        if attention_mask is None and (side == "left" or past_kv_cache is not None):
            prepend = self.cfg.default_prepend_bos if prepend_bos is None else prepend_bos
            attention_mask = get_attention_mask(self.tokenizer, tokens, prepend, padding_side=side)
        if attention_mask is not None:
            if attention_mask.shape != tokens.shape:
                raise ValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)} but the tokens {tuple(tokens.shape)}"
                )
            attention_mask = attention_mask.to(self.device)
            if past_kv_cache is not None:
                attention_mask = past_kv_cache.append_attention_mask(attention_mask)
            if attention_mask.bool().all():
                attention_mask = None  # all real: the unmasked path gives the same numbers, faster
        if self.cfg.use_hook_tokens:
            tokens = self.hook_tokens(tokens)
        residual = self.hook_embed(self.embed(tokens))  # [batch, pos, d_model]
        shortformer_pos_embed = None
        if self.cfg.positional_embedding_type in ("standard", "shortformer"):
            pos_embed = self.hook_pos_embed(self.pos_embed(tokens, offset, attention_mask))  # [batch, pos, d_model]
            if self.cfg.positional_embedding_type == "standard":
                residual = residual + pos_embed
            else:  # shortformer: added to every layer's query and key inputs, never to the residual stream
                shortformer_pos_embed = pos_embed
        return residual, tokens, shortformer_pos_embed, attention_mask

    def get_pos_offset(self, past_kv_cache: HookedTransformerKeyValueCache | None, batch_size: int) -> int:
        """Positions already in the key/value cache (0 without one); the cache must fit this model and batch."""
        if past_kv_cache is None:
            return 0
        if not self.cfg.causal:
            raise ValueError(
                "a key/value cache needs causal attention: in a bidirectional model earlier positions read later ones"
            )
        cached_batch, n_cached, n_heads, d_head = past_kv_cache[0].past_keys.shape
        want = (batch_size, self.blocks[0].attn.n_kv_inputs, self.cfg.d_head)
        if (cached_batch, n_heads, d_head) != want:
            raise ValueError(
                f"the key/value cache holds [batch={cached_batch}, kv_head={n_heads}, d_head={d_head}] but this "
                f"run needs {list(want)}: make it with HookedTransformerKeyValueCache.init_cache(model.cfg, "
                "model.device, batch_size)"
            )
        return n_cached

    def _check_residual(self, residual: Any, start_at_layer: int) -> torch.Tensor:
        if not isinstance(residual, torch.Tensor) or residual.ndim != 3 or residual.shape[-1] != self.cfg.d_model:
            got = tuple(residual.shape) if isinstance(residual, torch.Tensor) else type(residual).__name__
            raise ValueError(
                f"start_at_layer={start_at_layer} takes the residual stream [batch, pos, d_model={self.cfg.d_model}]"
                f" entering that block as input, got {got}"
            )
        return residual

    def run_with_cache(
        self,
        *model_args: Any,
        names_filter: NameFilter = None,
        device: str | torch.device | None = None,
        remove_batch_dim: bool = False,
        incl_bwd: bool = False,
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
        pos_slice: Any = None,
        return_cache_object: bool = True,
        **model_kwargs: Any,
    ) -> tuple[Any, ActivationCache | dict[str, torch.Tensor]]:
        """Run once and return (output, cache of every selected activation).

        names_filter: None (all), a hook name, a list of names, or fn(name) -> bool. With `incl_bwd`
        the output (a scalar, e.g. return_type="loss") is back-propagated and gradients are cached too.
        pos_slice (int, slice, positions or `Slice`) caches only those positions, as TransformerLens.
        """
        cache, fwd, bwd = self.get_caching_hooks(names_filter, incl_bwd, device, remove_batch_dim, pos_slice=pos_slice)
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

    # ---- weights, stacked over layers (TransformerLens shapes) ----------------------------------
    def _stack(self, get: Any) -> torch.Tensor:
        return torch.stack([get(block) for block in self.blocks], dim=0)

    def __getattr__(self, name: str) -> Any:
        # A property raising AttributeError lands here, so the reason is given here.
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("W_pos", "W_E_pos") and not hasattr(self, "pos_embed"):
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
    def from_pretrained(cls, model_name: str | Path, *args: Any, **kwargs: Any) -> HookedTransformer:
        """A Hugging Face causal LM (local folder in HF layout, or hub name), processed for interpretability.

        TransformerLens's arguments (fold_ln, center_writing_weights, center_unembed,
        refactor_factored_attn_matrices, ..., fold_value_biases, default_prepend_bos, dtype): see
        `circuitlab.loading.from_pretrained`; supported families: `circuitlab.loading.SUPPORTED`.
        """
        from ..loading import from_pretrained

        return from_pretrained(model_name, *args, **kwargs)

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

    def set_tokenizer(self, tokenizer: Any, default_padding_side: str | None = None) -> None:
        from ..loading.tokens import set_tokenizer

        set_tokenizer(self, tokenizer, default_padding_side)

    def to_tokens(
        self,
        input: str | list[str],
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
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

    def generate(self, input: Any = "", max_new_tokens: int = 10, *args: Any, **kwargs: Any) -> Any:
        """Greedy (do_sample=False) or sampled continuation, by default with a key/value cache
        (use_past_kv_cache=True, as TransformerLens); see `circuitlab.loading.generate.generate`."""
        from ..loading.generate import generate

        return generate(self, input, max_new_tokens, *args, **kwargs)

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
    return kv_tensor.repeat_interleave(attn.kv_group, dim=0) if attn.kv_group > 1 else kv_tensor
