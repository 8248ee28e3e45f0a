"""A transformer block: resid_pre -> attention -> resid_mid -> MLP -> resid_post, with TransformerLens hooks.

With `parallel_attn_mlp` both sublayers read resid_pre and resid_post = resid_pre + attn_out + mlp_out.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import Attention
from .config import HookedTransformerConfig
from .hook_points import HookPoint
from .kv_cache import HookedTransformerKeyValueCacheEntry
from .mlp import MLP
from .norms import make_norm


class TransformerBlock(nn.Module):
    def __init__(self, cfg: HookedTransformerConfig | dict, block_index: int = 0) -> None:
        super().__init__()
        cfg = HookedTransformerConfig.unwrap(cfg)
        self.cfg = cfg
        self.layer = block_index
        self.ln1 = make_norm(cfg)
        self.attn = Attention(cfg, layer_id=block_index)
        if not cfg.attn_only:
            self.ln2 = make_norm(cfg)
            self.mlp = MLP(cfg)
        # Present in every block as in TransformerLens; the flags below decide which ones fire.
        self.hook_attn_in = HookPoint()  # [batch, pos, head, d_model], use_attn_in
        self.hook_q_input = HookPoint()  # [batch, pos, head, d_model], use_split_qkv_input
        self.hook_k_input = HookPoint()  # [batch, pos, kv_head, d_model]
        self.hook_v_input = HookPoint()  # [batch, pos, kv_head, d_model]
        self.hook_mlp_in = HookPoint()  # [batch, pos, d_model], use_hook_mlp_in
        self.hook_attn_out = HookPoint()  # [batch, pos, d_model]
        self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        if not cfg.attn_only and not cfg.parallel_attn_mlp:
            self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]

    def _attention_inputs(
        self, resid_pre: torch.Tensor, shortformer_pos_embed: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised query/key/value inputs; per-head copies when the config splits them for path patching.

        A shortformer model adds its positional embedding to the query and key inputs, not to the values."""
        q_in, k_in, v_in = self._normalized_inputs(resid_pre)
        if shortformer_pos_embed is None:
            return q_in, k_in, v_in
        if q_in.ndim == 4:  # per head: [batch, pos, head, d_model]
            return q_in + shortformer_pos_embed[:, :, None], k_in + shortformer_pos_embed[:, :, None], v_in
        return q_in + shortformer_pos_embed, k_in + shortformer_pos_embed, v_in

    def _normalized_inputs(self, resid_pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        if cfg.use_split_qkv_input:
            q_in = self.hook_q_input(_per_head(resid_pre, cfg.n_heads))
            k_in = self.hook_k_input(_per_head(resid_pre, self.attn.n_kv_inputs))
            v_in = self.hook_v_input(_per_head(resid_pre, self.attn.n_kv_inputs))
            return self.ln1(q_in), self.ln1(k_in), self.ln1(v_in)
        if cfg.use_attn_in:
            attn_in = self.ln1(self.hook_attn_in(_per_head(resid_pre, cfg.n_heads)))
            if self.attn.n_kv_inputs == cfg.n_heads:
                return attn_in, attn_in, attn_in
            kv_in = attn_in[:, :, :: cfg.n_heads // self.attn.n_kv_inputs]  # one copy per kv head
            return attn_in, kv_in, kv_in
        normalized = self.ln1(resid_pre)
        return normalized, normalized, normalized

    def forward(
        self,
        resid_pre: torch.Tensor,
        shortformer_pos_embed: torch.Tensor | None = None,
        past_kv_cache_entry: HookedTransformerKeyValueCacheEntry | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """resid_pre [batch, pos, d_model] -> resid_post; the keyword arguments as in TransformerLens."""
        resid_pre = self.hook_resid_pre(resid_pre)  # [batch, pos, d_model]
        attn_in = self._attention_inputs(resid_pre, shortformer_pos_embed)
        attn_out = self.attn(*attn_in, past_kv_cache_entry=past_kv_cache_entry, attention_mask=attention_mask)
        attn_out = self.hook_attn_out(attn_out)
        if self.cfg.attn_only:
            return self.hook_resid_post(resid_pre + attn_out)
        if self.cfg.parallel_attn_mlp:  # GPT-J / NeoX: the MLP reads resid_pre too, not resid_mid
            mlp_in = self.hook_mlp_in(resid_pre.clone()) if self.cfg.use_hook_mlp_in else resid_pre
            mlp_out = self.hook_mlp_out(self.mlp(self.ln2(mlp_in)))
            return self.hook_resid_post(resid_pre + attn_out + mlp_out)
        resid_mid = self.hook_resid_mid(resid_pre + attn_out)
        mlp_in = self.hook_mlp_in(resid_mid.clone()) if self.cfg.use_hook_mlp_in else resid_mid
        mlp_out = self.hook_mlp_out(self.mlp(self.ln2(mlp_in)))
        return self.hook_resid_post(resid_mid + mlp_out)


def _per_head(resid: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[batch, pos, d_model] -> [batch, pos, head, d_model], a copy per head so each can be patched alone."""
    return resid.unsqueeze(2).expand(-1, -1, n_heads, -1).clone()
