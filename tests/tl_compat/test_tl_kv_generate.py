"""TransformerLens-style key/value-cache programs: incremental decoding by hand and `generate`, checked against
circuitlab's full forward and the uncached generation on the same weights.

Checked once by hand against TransformerLens 2.18 on identical weights: the cached two-piece forward equals
TL's to 1.3e-6; greedy `generate` gives TL's tokens for rotary and ALiBi models. (For learned positions TL's
`generate` differs when the tokenizer's pad id is 0, as here: it builds its mask from a tensor of zeros, so
every position counts as padding and gets no positional embedding; its forward pass agrees with ours.)
"""

from __future__ import annotations

import pytest
import torch

from circuitlab import HookedTransformer, HookedTransformerConfig
from circuitlab.past_key_value_caching import HookedTransformerKeyValueCache

from ._tl_model_tiny import tiny_folder


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> HookedTransformer:
    pytest.importorskip("transformers")
    return HookedTransformer.from_pretrained(tiny_folder(tmp_path_factory.mktemp("tiny")))


def test_decode_token_by_token_with_the_cache(model: HookedTransformer) -> None:
    tokens = model.to_tokens("the cat sat on the mat and the dog")
    # --- TL code: prompt once, then one token at a time
    cache = HookedTransformerKeyValueCache.init_cache(model.cfg, model.cfg.device, batch_size=1)
    logits = [model(tokens[:, :4], past_kv_cache=cache)]
    for i in range(4, tokens.shape[1]):
        logits.append(model(tokens[:, i : i + 1], past_kv_cache=cache))
    # --- native: one full forward
    torch.testing.assert_close(torch.cat(logits, dim=1), model(tokens), atol=1e-5, rtol=1e-5)
    assert cache.entries[0].past_keys.shape == (1, tokens.shape[1], model.cfg.n_heads, model.cfg.d_head)


def test_frozen_prefix_cache_shared_by_continuations(model: HookedTransformer) -> None:
    prefix = model.to_tokens("the cat sat on")
    cache = HookedTransformerKeyValueCache.init_cache(model.cfg, model.cfg.device, 1)
    model(prefix, past_kv_cache=cache)
    cache.freeze()
    for word in [" the mat", " a log"]:
        rest = model.to_tokens(word, prepend_bos=False)
        got = model(rest, past_kv_cache=cache)
        full = model(torch.cat([prefix, rest], dim=1))[:, prefix.shape[1] :]
        torch.testing.assert_close(got, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pos", ["standard", "rotary", "alibi"])
def test_generate_with_the_cache_equals_without(model: HookedTransformer, pos: str) -> None:
    cfg = HookedTransformerConfig(
        n_layers=2, d_model=32, n_heads=4, n_ctx=40, d_vocab=model.cfg.d_vocab, positional_embedding_type=pos, seed=2
    )
    lm = HookedTransformer(cfg, model.tokenizer)
    # --- TL code
    text = lm.generate("the cat", max_new_tokens=8, do_sample=False, use_past_kv_cache=True, verbose=False)
    tokens = lm.generate(
        lm.to_tokens("the cat"), max_new_tokens=8, do_sample=False, use_past_kv_cache=True, return_type="tokens"
    )
    # --- native: greedy decoding by repeated full forwards
    ref = lm.to_tokens("the cat")
    for _ in range(8):
        ref = torch.cat([ref, lm(ref)[:, -1].argmax(-1, keepdim=True)], dim=1)
        if ref[0, -1] == lm.tokenizer.eos_token_id:
            break
    assert torch.equal(tokens, ref)
    assert text == lm.to_string(ref[0, 1:])
    assert isinstance(lm.generate("the cat", max_new_tokens=2, return_type="tokens", verbose=False), torch.Tensor)
    sampled = [lm.generate("the cat", 6, use_past_kv_cache=c, seed=0, return_type="tokens") for c in (True, False)]
    assert torch.equal(*sampled)
