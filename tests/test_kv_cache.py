"""Key/value cache: running a sequence in pieces against the cache gives the logits of one full run."""

from __future__ import annotations

import itertools

import pytest
import torch

from circuitlab import HookedTransformerKeyValueCache
from circuitlab.model.kv_cache import HookedTransformerKeyValueCacheEntry
from circuitlab.past_key_value_caching import HookedTransformerKeyValueCache as TLPathCache

from .conftest import CONFIGS, small_model

CAUSAL = {
    name: over
    for name, over in CONFIGS.items()
    if over.get("causal", True) and over.get("attention_dir", "causal") == "causal"
}


def _pieces(model, tokens, cuts, mask=None):
    cache = HookedTransformerKeyValueCache.init_cache(model.cfg, model.device, tokens.shape[0])
    bounds = [0, *cuts, tokens.shape[1]]
    outs = []
    for lo, hi in itertools.pairwise(bounds):
        piece_mask = None if mask is None else mask[:, lo:hi]
        outs.append(model(tokens[:, lo:hi], attention_mask=piece_mask, past_kv_cache=cache))
    return torch.cat(outs, dim=1), cache


@pytest.mark.parametrize("name", sorted(CAUSAL))
def test_cached_pieces_equal_one_full_run(name: str, tokens: torch.Tensor) -> None:
    model = small_model(**CAUSAL[name])
    pieces, cache = _pieces(model, tokens, cuts=[4, 7, 8, 9])
    torch.testing.assert_close(pieces, model(tokens), atol=1e-5, rtol=1e-5)
    assert cache.n_cached == tokens.shape[1]
    assert cache[0].past_keys.shape == (3, 11, model.blocks[0].attn.n_kv_inputs, model.cfg.d_head)
    assert cache.previous_attention_mask.shape == (3, 11)


def test_cached_left_padded_pieces_equal_the_full_masked_run(tokens: torch.Tensor) -> None:
    model = small_model(positional_embedding_type="rotary")
    mask = torch.ones_like(tokens)
    mask[0, :3] = 0
    mask[1, :1] = 0
    full = model(tokens, attention_mask=mask)
    pieces, _ = _pieces(model, tokens, cuts=[5, 6], mask=mask)
    real = mask.bool()
    torch.testing.assert_close(pieces[real], full[real], atol=1e-5, rtol=1e-5)


def test_frozen_cache_is_read_but_not_extended(tokens: torch.Tensor) -> None:
    model = small_model()
    cache = HookedTransformerKeyValueCache.init_cache(model.cfg, model.device, 3)
    model(tokens[:, :6], past_kv_cache=cache)
    cache.freeze()
    a = model(tokens[:, 6:], past_kv_cache=cache)
    b = model(tokens[:, 6:], past_kv_cache=cache)  # same prefix again: the cache did not grow
    assert cache.n_cached == 6 and cache.previous_attention_mask.shape == (3, 6)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, model(tokens)[:, 6:], atol=1e-5, rtol=1e-5)
    cache.unfreeze()
    model(tokens[:, 6:], past_kv_cache=cache)
    assert cache.n_cached == tokens.shape[1]


def test_entry_appends_and_tl_module_path() -> None:
    model = small_model(n_key_value_heads=2)
    assert TLPathCache is HookedTransformerKeyValueCache
    entry = HookedTransformerKeyValueCacheEntry.init_cache_entry(model.cfg, "cpu", batch_size=2)
    keys, values = entry.append(torch.ones(2, 3, 2, 8), torch.zeros(2, 3, 2, 8))
    assert keys.shape == values.shape == entry.past_keys.shape == (2, 3, 2, 8)
    with pytest.raises(ValueError, match="batch, kv_head and d_head"):
        entry.append(torch.ones(2, 1, 4, 8), torch.ones(2, 1, 4, 8))


def test_cache_errors(tokens: torch.Tensor) -> None:
    model = small_model()
    wrong_batch = HookedTransformerKeyValueCache.init_cache(model.cfg, model.device, 2)
    with pytest.raises(ValueError, match="batch=2"):
        model(tokens, past_kv_cache=wrong_batch)
    cache = HookedTransformerKeyValueCache.init_cache(model.cfg, model.device, 3)
    model(tokens, past_kv_cache=cache)
    with pytest.raises(ValueError, match="longer than n_ctx"):
        model(torch.zeros(3, 20, dtype=torch.long), past_kv_cache=cache)
    bidirectional = small_model(causal=False)
    with pytest.raises(ValueError, match="causal"):
        bidirectional(tokens, past_kv_cache=HookedTransformerKeyValueCache.init_cache(bidirectional.cfg, None, 3))


def test_cached_run_fires_hooks_on_the_new_positions_only(tokens: torch.Tensor) -> None:
    model = small_model(positional_embedding_type="rotary")
    cache = HookedTransformerKeyValueCache.init_cache(model.cfg, model.device, 3)
    model(tokens[:, :8], past_kv_cache=cache)
    _, act = model.run_with_cache(tokens[:, 8:], past_kv_cache=cache)
    _, full = model.run_with_cache(tokens)
    assert act["blocks.0.attn.hook_q"].shape[1] == 3
    assert act["blocks.0.attn.hook_pattern"].shape[-2:] == (3, 11)  # new queries read every key
    torch.testing.assert_close(act["pattern", 1], full["pattern", 1][:, :, 8:], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["ln_mlp_gelu", "llama_like", "local_attention"])
def test_generate_with_and_without_the_cache_gives_the_same_tokens(name: str, tokens: torch.Tensor) -> None:
    model = small_model(**CONFIGS[name])
    kwargs = dict(max_new_tokens=10, do_sample=False, stop_at_eos=False)
    cached = model.generate(tokens[:, :5], use_past_kv_cache=True, **kwargs)
    plain = model.generate(tokens[:, :5], use_past_kv_cache=False, **kwargs)
    assert cached.shape == (3, 15)
    torch.testing.assert_close(cached, plain)
    sampled = [model.generate(tokens[:, :5], max_new_tokens=6, use_past_kv_cache=c, seed=3) for c in (True, False)]
    torch.testing.assert_close(*sampled)


def test_generate_stops_at_eos_with_the_cache(tokens: torch.Tensor) -> None:
    model = small_model()
    first = model.generate(tokens[:1, :5], max_new_tokens=1, do_sample=False)[0, -1].item()
    out = model.generate(tokens[:1, :5], max_new_tokens=8, do_sample=False, eos_token_id=first)
    assert out.shape == (1, 6) and out[0, -1] == first
