"""Export a GPT-2-shaped `HookedTransformer` as a Hugging Face GPT-2 checkpoint (`GPT2LMHeadModel` layout).

The inverse of the table in `circuitlab.loading.architectures.gpt2`: `config.json` (a `GPT2Config`),
`model.safetensors` under Hugging Face parameter names (Conv1D layout, fused qkv) and, when given, the
tokenizer files, so `transformers.GPT2LMHeadModel.from_pretrained` and `HookedTransformer.from_pretrained`
load it like any pretrained model. Only models GPT-2 can express are accepted (LayerNorm, learned positions,
no unembedding bias: GPT-2's `lm_head` has none); anything else is refused with the reason. An attention-only
model is written with an all-zero MLP of width 1 in every block (its output is exactly 0: `b_out` and `W_out`
are zero), so the exported GPT-2 computes the same function.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import torch

from ..model import HookedTransformer
from .tokenizer import EOS_ID, atomic_dir

HF_ACT = {"gelu_new": "gelu_new", "gelu": "gelu", "relu": "relu", "gelu_fast": "gelu_fast", "silu": "silu"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt")


def gpt2_incompatibilities(model: HookedTransformer) -> list[str]:
    """Why this model cannot be written as GPT-2 (empty when it can)."""
    cfg = model.cfg
    checks = [
        (cfg.normalization_type == "LN", f"normalization_type={cfg.normalization_type!r} (GPT-2 uses 'LN')"),
        (cfg.positional_embedding_type == "standard", f"positional_embedding_type={cfg.positional_embedding_type!r}"),
        (cfg.act_fn in HF_ACT, f"act_fn={cfg.act_fn!r} (supported: {sorted(HF_ACT)})"),
        (cfg.n_heads * cfg.d_head == cfg.d_model, f"n_heads * d_head = {cfg.n_heads * cfg.d_head} != d_model"),
        (cfg.n_key_value_heads is None, "grouped-query attention"),
        (cfg.causal, "bidirectional attention"),
        (not cfg.parallel_attn_mlp and not cfg.gated_mlp, "parallel or gated MLP"),
        (cfg.attn_types is None or set(cfg.attn_types) == {"global"}, "local attention"),
        (cfg.attn_scale in (math.sqrt(cfg.d_head), 1.0), f"attn_scale={cfg.attn_scale} (sqrt(d_head) or 1.0)"),
        (cfg.d_vocab_out == cfg.d_vocab, "d_vocab_out != d_vocab"),
        (not bool(model.unembed.b_U.detach().abs().max() > 0), "a nonzero unembedding bias b_U (train with it frozen)"),
    ]
    return [why for ok, why in checks if not ok]


def gpt2_config(model: HookedTransformer, bos_id: int = EOS_ID) -> dict[str, Any]:
    from transformers import GPT2Config

    cfg = model.cfg
    hf = GPT2Config(
        vocab_size=cfg.d_vocab,
        n_positions=cfg.n_ctx,
        n_embd=cfg.d_model,
        n_layer=cfg.n_layers,
        n_head=cfg.n_heads,
        n_inner=1 if cfg.attn_only else cfg.d_mlp,  # attention-only: a zero MLP of width 1
        activation_function=HF_ACT[cfg.act_fn],
        layer_norm_epsilon=cfg.eps,
        scale_attn_weights=cfg.attn_scale != 1.0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=bos_id,
        eos_token_id=bos_id,
        tie_word_embeddings=False,
        architectures=["GPT2LMHeadModel"],
    )
    return hf.to_dict()


def gpt2_state_dict(model: HookedTransformer) -> dict[str, torch.Tensor]:
    """Our weights under GPT-2's names and layouts."""
    out: dict[str, torch.Tensor] = {
        "transformer.wte.weight": model.embed.W_E,
        "transformer.wpe.weight": model.pos_embed.W_pos,
        "transformer.ln_f.weight": model.ln_final.w,
        "transformer.ln_f.bias": model.ln_final.b,
        "lm_head.weight": model.unembed.W_U.T,
    }
    d = model.cfg.d_model
    for l, block in enumerate(model.blocks):
        h, attn = f"transformer.h.{l}", block.attn
        qkv = torch.stack([attn.W_Q, attn.W_K, attn.W_V])  # [3, head, d_model, d_head]
        out |= {
            f"{h}.ln_1.weight": block.ln1.w,
            f"{h}.ln_1.bias": block.ln1.b,
            f"{h}.attn.c_attn.weight": qkv.permute(2, 0, 1, 3).flatten(1),  # [d_model, 3 * head * d_head]
            f"{h}.attn.c_attn.bias": torch.stack([attn.b_Q, attn.b_K, attn.b_V]).flatten(),
            f"{h}.attn.c_proj.weight": attn.W_O.flatten(0, 1),  # [head * d_head, d_model]
            f"{h}.attn.c_proj.bias": attn.b_O,
        }
        if model.cfg.attn_only:  # an MLP whose output is exactly zero
            zero = model.embed.W_E.new_zeros
            out |= {
                f"{h}.ln_2.weight": zero(d) + 1,
                f"{h}.ln_2.bias": zero(d),
                f"{h}.mlp.c_fc.weight": zero(d, 1),
                f"{h}.mlp.c_fc.bias": zero(1),
                f"{h}.mlp.c_proj.weight": zero(1, d),
                f"{h}.mlp.c_proj.bias": zero(d),
            }
        else:
            mlp = block.mlp
            out |= {
                f"{h}.ln_2.weight": block.ln2.w,
                f"{h}.ln_2.bias": block.ln2.b,
                f"{h}.mlp.c_fc.weight": mlp.W_in,  # Conv1D is [in, out] like ours
                f"{h}.mlp.c_fc.bias": mlp.b_in,
                f"{h}.mlp.c_proj.weight": mlp.W_out,
                f"{h}.mlp.c_proj.bias": mlp.b_out,
            }
    return {k: v.detach().float().contiguous().cpu().clone() for k, v in out.items()}


def export_gpt2(model: HookedTransformer, folder: str | Path, tokenizer_dir: str | Path | None = None) -> Path:
    """Write `model` as a Hugging Face GPT-2 folder (atomically), with the tokenizer files if given."""
    from safetensors.torch import save_file

    problems = gpt2_incompatibilities(model)
    if problems:
        raise ValueError(f"this model cannot be exported as GPT-2: {'; '.join(problems)}")
    config = gpt2_config(model)
    state = gpt2_state_dict(model)

    def fill(tmp: Path) -> None:
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        if tokenizer_dir is not None:
            for name in TOKENIZER_FILES:
                if (Path(tokenizer_dir) / name).is_file():
                    shutil.copy(Path(tokenizer_dir) / name, tmp / name)

    return atomic_dir(Path(folder), fill)
