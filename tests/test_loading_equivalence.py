"""Loaded models equal `transformers` (float32, eager attention): logits, log-probs, residual streams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from circuitlab import HookedTransformer
from circuitlab.numpy_ref import export_npz, forward, load_npz

from .loading_helpers import CASES, save_hf, tokens
from .shared_models import shared_model

ATOL = 1e-4


@pytest.fixture(scope="module", params=list(CASES))
def saved(request, tmp_path_factory) -> tuple[str, Path, object, object]:
    folder = tmp_path_factory.mktemp(request.param)
    hf = save_hf(request.param, folder)
    with torch.no_grad():
        out = hf(tokens(), output_hidden_states=True)
    return request.param, folder, hf, out


def test_unprocessed_logits_and_residual_stream_equal_transformers(saved) -> None:
    _, folder, _, out = saved
    model = HookedTransformer.from_pretrained_no_processing(folder)
    logits, cache = model.run_with_cache(tokens())
    torch.testing.assert_close(logits, out.logits, atol=ATOL, rtol=0)
    n = model.cfg.n_layers
    assert len(out.hidden_states) == n + 1
    torch.testing.assert_close(
        cache["hook_embed"] + cache["hook_pos_embed"] if "hook_pos_embed" in cache else cache["hook_embed"],
        out.hidden_states[0],
        atol=ATOL,
        rtol=0,
    )
    for layer in range(n - 1):
        torch.testing.assert_close(
            cache[f"blocks.{layer}.hook_resid_post"], out.hidden_states[layer + 1], atol=ATOL, rtol=0
        )
    # transformers' last hidden state is after the final norm
    last = model.ln_final(cache[f"blocks.{n - 1}.hook_resid_post"])
    torch.testing.assert_close(last, out.hidden_states[n], atol=ATOL, rtol=0)


def test_processed_log_probs_equal_transformers(saved) -> None:
    _, folder, _, out = saved
    model = HookedTransformer.from_pretrained(folder)
    assert model.cfg.normalization_type in ("LNPre", "RMSPre")
    log_probs = model(tokens()).log_softmax(-1)
    torch.testing.assert_close(log_probs, out.logits.log_softmax(-1), atol=ATOL, rtol=0)


def test_from_hf_model_in_memory_equals_transformers(saved) -> None:
    _, _, hf, out = saved
    model = HookedTransformer.from_hf_model(hf, fold_ln=False, center_writing_weights=False, center_unembed=False)
    torch.testing.assert_close(model(tokens()), out.logits, atol=ATOL, rtol=0)
    # the weights are copied: changing ours leaves transformers' model alone
    with torch.no_grad():
        model.W_E.zero_()
    assert hf.get_input_embeddings().weight.abs().sum() > 0


def test_numpy_twin_runs_the_processed_model(saved, tmp_path: Path) -> None:
    _, folder, _, out = saved
    model = HookedTransformer.from_pretrained(folder, dtype=torch.float64)
    assert model.W_E.dtype == torch.float64
    cfg, params = load_npz(export_npz(model, tmp_path / "m.npz"))
    np_logits, _ = forward(params, cfg, tokens().numpy())
    np.testing.assert_allclose(np_logits, model(tokens()).detach().numpy(), atol=1e-8)
    expected = out.logits.log_softmax(-1).double().numpy()
    got = torch.from_numpy(np_logits).log_softmax(-1).numpy()
    np.testing.assert_allclose(got, expected, atol=ATOL)


def test_loaded_configs_have_the_family_switches() -> None:
    import tempfile

    expected = {
        "gpt_neo_local": dict(attn_scale=1.0, attn_types=["global", "local", "local"], window_size=3),
        "neox_parallel_partial_rotary": dict(parallel_attn_mlp=True, rotary_dim=6, rotary_base=500.0),
        "neox_sequential": dict(parallel_attn_mlp=False, rotary_dim=4),
        "llama_gqa2_head_dim": dict(n_heads=6, d_head=10, n_key_value_heads=3, gated_mlp=True, act_fn="silu"),
        "llama_gqa4_bias": dict(n_key_value_heads=2, rotary_base=1000.0),
        "qwen2_gqa4": dict(n_key_value_heads=1, d_head=12),
        "mistral_sliding": dict(n_heads=5, d_head=8, n_key_value_heads=None, attn_types=["local", "local"]),
    }
    for case, fields in expected.items():
        with tempfile.TemporaryDirectory() as folder:
            save_hf(case, Path(folder))
            cfg = HookedTransformer.from_pretrained_no_processing(folder).cfg
        for name, value in fields.items():
            assert getattr(cfg, name) == value, (case, name)


@pytest.mark.slow
def test_gpt2_small_sized_model_equals_transformers(tmp_path: Path) -> None:
    import transformers as tf

    torch.manual_seed(0)
    hf = tf.GPT2LMHeadModel(tf.GPT2Config(attn_implementation="eager")).eval()  # 124M, random weights
    hf.save_pretrained(tmp_path)
    hf = tf.GPT2LMHeadModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    toks = torch.randint(0, 50257, (2, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = hf(toks, output_hidden_states=True)
    plain = HookedTransformer.from_pretrained_no_processing(tmp_path)
    logits, cache = plain.run_with_cache(toks)
    torch.testing.assert_close(logits, out.logits, atol=ATOL, rtol=0)
    for layer in range(11):
        torch.testing.assert_close(cache["resid_post", layer], out.hidden_states[layer + 1], atol=ATOL, rtol=0)
    del plain, cache
    processed = HookedTransformer.from_pretrained(tmp_path)
    torch.testing.assert_close(processed(toks).log_softmax(-1), out.logits.log_softmax(-1), atol=ATOL, rtol=0)


@pytest.fixture(scope="module")
def llama2c() -> Path:
    """Real trained Llama weights (260K parameters, BOS id 1, no tokenizer; see its NOTICE.md)."""
    return shared_model("llama2c-260k-rvspoc")


def test_real_llama_log_probs_equal_transformers_at_64_tokens(llama2c: Path) -> None:
    import transformers

    model = HookedTransformer.from_pretrained(llama2c)
    hf = transformers.AutoModelForCausalLM.from_pretrained(llama2c, attn_implementation="eager")
    ids = torch.randint(3, 512, (2, 64), generator=torch.Generator().manual_seed(0))
    ids[:, 0] = 1  # its BOS
    with torch.no_grad():
        expected = hf(ids).logits.log_softmax(-1)
    torch.testing.assert_close(model(ids).log_softmax(-1), expected, atol=ATOL, rtol=0)
    raw = HookedTransformer.from_pretrained_no_processing(llama2c)
    torch.testing.assert_close(raw(ids).log_softmax(-1), expected, atol=ATOL, rtol=0)


def test_real_llama_head_census_uses_its_bos_id_1(llama2c: Path, tmp_path: Path) -> None:
    from circuitlab.analysis import head_census, head_scores, make_probes
    from circuitlab.analysis.heads import model_bos_id

    model = HookedTransformer.from_pretrained(llama2c)
    assert model.tokenizer is None and model_bos_id(model) == 1  # read from its config.json
    assert model_bos_id(HookedTransformer.load(model.save(tmp_path / "saved"))) == 1  # and kept by save / load
    census = head_census(model, batch=4, length=32, ablate=False)
    with_1 = head_scores(model, probes=make_probes(512, 512, batch=4, length=32, bos=1))
    with_0 = head_scores(model, probes=make_probes(512, 512, batch=4, length=32, bos=0))
    first = torch.tensor([[r.scores["first_token"] for r in census.rows]]).reshape(5, 8)
    torch.testing.assert_close(first, with_1.scores["first_token"], atol=1e-4, rtol=0)
    assert not torch.allclose(with_1.scores["first_token"], with_0.scores["first_token"], atol=1e-3)
    assert len(census.rows) == 40 and any(r.roles for r in census.rows)  # trained heads: some roles pass
