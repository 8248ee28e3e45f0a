"""A transformer block: resid_pre -> attention -> resid_mid -> MLP -> resid_post, with TransformerLens hooks.

With `parallel_attn_mlp` both sublayers read resid_pre and resid_post = resid_pre + attn_out + mlp_out.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import Attention
from .config import HookedTransformerConfig
from .hook_points import HookPoint
from .mlp import MLP
from .norms import make_norm


class TransformerBlock(nn.Module):
    def __init__(self, cfg: HookedTransformerConfig, layer: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.layer = layer
        self.ln1 = make_norm(cfg)
        self.attn = Attention(cfg, layer)
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

    def _attention_inputs(self, resid_pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised query/key/value inputs; per-head copies when the config splits them for path patching."""
        cfg = self.cfg
        if cfg.use_split_qkv_input:
            q_in = self.hook_q_input(_per_head(resid_pre, cfg.n_heads))
            k_in = self.hook_k_input(_per_head(resid_pre, cfg.n_kv_heads))
            v_in = self.hook_v_input(_per_head(resid_pre, cfg.n_kv_heads))
            return self.ln1(q_in), self.ln1(k_in), self.ln1(v_in)
        if cfg.use_attn_in:
            attn_in = self.ln1(self.hook_attn_in(_per_head(resid_pre, cfg.n_heads)))
            if cfg.n_kv_heads == cfg.n_heads:
                return attn_in, attn_in, attn_in
            kv_in = attn_in[:, :, :: cfg.n_heads // cfg.n_kv_heads]  # one copy per kv head
            return attn_in, kv_in, kv_in
        normalized = self.ln1(resid_pre)
        return normalized, normalized, normalized

    def forward(self, resid_pre: torch.Tensor) -> torch.Tensor:
        resid_pre = self.hook_resid_pre(resid_pre)  # [batch, pos, d_model]
        attn_out = self.hook_attn_out(self.attn(*self._attention_inputs(resid_pre)))
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
