"""Shared helpers: small models for every config switch."""

from __future__ import annotations

import pytest
import torch

from circuitlab import HookedTransformer, HookedTransformerConfig

# One entry per switch the theory talks about; the NumPy-parity and fast-path tests run them all.
CONFIGS: dict[str, dict] = {
    "ln_mlp_gelu": dict(),
    "attn_only_no_ln": dict(attn_only=True, normalization_type=None),
    "no_pos_embed": dict(positional_embedding_type="none"),
    "bidirectional": dict(causal=False),
    "no_attn_scale": dict(attn_scale=1.0),
    "ln_pre_relu": dict(normalization_type="LNPre", act_fn="relu"),
    "rms_silu": dict(normalization_type="RMS", act_fn="silu"),
    "rms_pre_gelu_new": dict(normalization_type="RMSPre", act_fn="gelu_new"),
    "gelu_fast": dict(act_fn="gelu_fast"),
    "solu_ln": dict(act_fn="solu_ln"),
    "rotary": dict(positional_embedding_type="rotary"),
    "rotary_partial_adjacent": dict(positional_embedding_type="rotary", rotary_dim=4, rotary_adjacent_pairs=True),
    "gqa": dict(n_key_value_heads=2),
    "gqa_rotary_rms": dict(n_key_value_heads=1, positional_embedding_type="rotary", normalization_type="RMS"),
    "attn_result": dict(use_attn_result=True),
    "parallel_attn_mlp": dict(parallel_attn_mlp=True),
    "gated_mlp_rms_silu": dict(gated_mlp=True, normalization_type="RMS", act_fn="silu"),
    "local_attention": dict(attn_types=["local", "global"], window_size=3),
    "neox_like": dict(parallel_attn_mlp=True, positional_embedding_type="rotary", rotary_dim=4),
    "shortformer": dict(positional_embedding_type="shortformer"),
    "alibi": dict(positional_embedding_type="alibi"),
    "solu": dict(act_fn="solu"),
    "gelu_pytorch_tanh": dict(act_fn="gelu_pytorch_tanh"),
    "attention_dir_bidirectional": dict(attention_dir="bidirectional"),
    "ungrouped_gqa_rotary": dict(
        n_key_value_heads=2, ungroup_grouped_query_attention=True, positional_embedding_type="rotary"
    ),
    "llama_like": dict(
        gated_mlp=True, normalization_type="RMS", act_fn="silu", positional_embedding_type="rotary", n_key_value_heads=2
    ),
}


def small_cfg(**overrides) -> HookedTransformerConfig:
    kwargs = dict(n_layers=2, d_model=32, n_heads=4, d_head=8, n_ctx=24, d_vocab=40, seed=0)
    kwargs.update(overrides)
    return HookedTransformerConfig(**kwargs)


def small_model(**overrides) -> HookedTransformer:
    model = HookedTransformer(small_cfg(**overrides))
    if overrides.get("normalization_type", "LN") in ("LN", "RMS"):
        randomize_norm_weights(model)  # so a bug that drops w or b cannot hide behind w=1, b=0
    return model


def randomize_norm_weights(model: HookedTransformer, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("w", "b") or leaf.lstrip("_").startswith("b_"):
                param.add_(0.3 * torch.randn(param.shape, generator=gen, dtype=torch.float64).to(param.dtype))


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randint(0, 40, (3, 11), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="session")
def trained_induction(tmp_path_factory):
    """The induction preset trained for 400 steps, with head scores recorded at every eval (~15 s); its run
    directory (config.json, metrics.jsonl, checkpoints/, final/) is `result.run_dir` (read it, never write)."""
    from circuitlab.analysis import register_head_scores
    from circuitlab.training import from_preset, train

    task, model_cfg, train_cfg = from_preset("induction", training=dict(steps=400))
    out = tmp_path_factory.mktemp("trained_induction") / "run"
    model = HookedTransformer(model_cfg)  # on one thread, like every test (see _one_torch_thread)
    result = train(model, task, train_cfg, out_dir=out, metrics=register_head_scores(), progress=False)
    return task, result


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Every test runs small models: one thread is faster, and two stall when the 2-core machine is busy.
    (Benchmarks, not tests, measure speed.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
