"""Small `transformers` models with random weights, saved to a folder, for the loading tests (all offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

tf = pytest.importorskip("transformers")

VOCAB = 61
COMMON = dict(vocab_size=VOCAB, bos_token_id=0, eos_token_id=1, attn_implementation="eager")

# Each case: (model class name, config class name, config kwargs). Awkward shapes on purpose.
CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "gpt2": ("GPT2LMHeadModel", "GPT2Config", dict(n_layer=3, n_embd=48, n_head=4, n_positions=32, n_inner=100)),
    "gpt_neo_local": (
        "GPTNeoForCausalLM",
        "GPTNeoConfig",
        dict(
            num_layers=3,
            hidden_size=48,
            num_heads=6,
            max_position_embeddings=32,
            attention_types=[[["global", "local"], 1], [["local"], 1]],
            window_size=3,
        ),
    ),
    "neox_parallel_partial_rotary": (
        "GPTNeoXForCausalLM",
        "GPTNeoXConfig",
        dict(
            num_hidden_layers=3,
            hidden_size=48,
            num_attention_heads=4,
            intermediate_size=80,
            max_position_embeddings=32,
            rotary_pct=0.5,
            rotary_emb_base=500,
        ),
    ),
    "neox_sequential": (
        "GPTNeoXForCausalLM",
        "GPTNeoXConfig",
        dict(
            num_hidden_layers=2,
            hidden_size=32,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=32,
            rotary_pct=0.25,
            use_parallel_residual=False,
            tie_word_embeddings=True,
        ),
    ),
    "llama_gqa2_head_dim": (  # 6 heads of 10 on d_model 48: n_heads * d_head != d_model
        "LlamaForCausalLM",
        "LlamaConfig",
        dict(
            num_hidden_layers=2,
            hidden_size=48,
            num_attention_heads=6,
            num_key_value_heads=3,
            head_dim=10,
            intermediate_size=70,
            max_position_embeddings=32,
            rms_norm_eps=1e-5,
            tie_word_embeddings=True,
        ),
    ),
    "llama_gqa4_bias": (
        "LlamaForCausalLM",
        "LlamaConfig",
        dict(
            num_hidden_layers=2,
            hidden_size=40,
            num_attention_heads=8,
            num_key_value_heads=2,
            head_dim=6,
            intermediate_size=64,
            max_position_embeddings=32,
            attention_bias=True,
            rope_theta=1000.0,
        ),
    ),
    "qwen2_gqa4": (
        "Qwen2ForCausalLM",
        "Qwen2Config",
        dict(
            num_hidden_layers=2,
            hidden_size=48,
            num_attention_heads=4,
            num_key_value_heads=1,
            intermediate_size=70,
            max_position_embeddings=32,
        ),
    ),
    "mistral_sliding": (  # 5 heads of 8 on d_model 36: n_heads does not divide d_model
        "MistralForCausalLM",
        "MistralConfig",
        dict(
            num_hidden_layers=2,
            hidden_size=36,
            num_attention_heads=5,
            num_key_value_heads=5,
            head_dim=8,
            intermediate_size=50,
            max_position_embeddings=32,
            sliding_window=4,
        ),
    ),
}


def build_hf(case: str, seed: int = 0) -> Any:
    """A `transformers` model of the case with random weights big enough to matter (norms and biases too)."""
    model_cls, cfg_cls, kwargs = CASES[case]
    torch.manual_seed(seed)
    model = getattr(tf, model_cls)(getattr(tf, cfg_cls)(**COMMON, **kwargs)).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=gen))
    return model


def save_hf(case: str, folder: Path, seed: int = 0) -> Any:
    """Save the case to `folder` and reload it from there with eager attention: the reference model."""
    model = build_hf(case, seed)
    model.save_pretrained(folder)
    return type(model).from_pretrained(folder, attn_implementation="eager").eval()


def tokens(batch: int = 2, pos: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, pos), generator=torch.Generator().manual_seed(seed))
