"""start_at_layer / stop_at_layer / input_to_embed: a run split at any layer equals the whole run."""

from __future__ import annotations

import pytest
import torch

from circuitlab import HookedTransformerKeyValueCache

from .conftest import small_model


@pytest.mark.parametrize("layer", [0, 1, -1])
def test_start_at_layer_continues_from_the_residual_stream(layer: int, tokens: torch.Tensor) -> None:
    model = small_model(n_layers=3)
    logits, cache = model.run_with_cache(tokens)
    resid = cache["resid_pre", layer % 3]
    torch.testing.assert_close(model(resid, start_at_layer=layer), logits)
    loss = model(resid, start_at_layer=layer, tokens=tokens, return_type="loss")
    torch.testing.assert_close(loss, model(tokens, return_type="loss"))
    with pytest.raises(ValueError, match="pass tokens="):
        model(resid, start_at_layer=layer, return_type="loss")


def test_start_and_stop_at_layer_run_only_the_blocks_between(tokens: torch.Tensor) -> None:
    model = small_model(n_layers=3)
    _, cache = model.run_with_cache(tokens)
    out = model(cache["resid_pre", 1], start_at_layer=1, stop_at_layer=2)
    torch.testing.assert_close(out, cache["resid_pre", 2])
    torch.testing.assert_close(model(tokens, stop_at_layer=-1), cache["resid_pre", 2])
    with pytest.raises(ValueError, match="residual stream"):
        model(tokens, start_at_layer=1)


def test_input_to_embed_then_start_at_layer_zero_is_the_forward(tokens: torch.Tensor) -> None:
    for pos in ("standard", "shortformer", "rotary"):
        model = small_model(positional_embedding_type=pos)
        resid, toks, shortformer, mask = model.input_to_embed(tokens)
        assert mask is None and torch.equal(toks, tokens)
        assert (shortformer is not None) == (pos == "shortformer")
        out = model(resid, start_at_layer=0, shortformer_pos_embed=shortformer)
        torch.testing.assert_close(out, model(tokens))


def test_start_at_layer_takes_the_attention_mask(tokens: torch.Tensor) -> None:
    model = small_model(positional_embedding_type="rotary")
    mask = torch.ones_like(tokens)
    mask[:, :2] = 0
    resid, _, _, mask_out = model.input_to_embed(tokens, attention_mask=mask)
    full = model(tokens, attention_mask=mask)
    torch.testing.assert_close(model(resid, start_at_layer=0, attention_mask=mask_out), full)
    assert not torch.allclose(model(resid, start_at_layer=0), full)  # the mask matters


def test_start_at_layer_with_a_key_value_cache(tokens: torch.Tensor) -> None:
    """Later positions from a middle layer on, reusing the cached keys/values of the earlier positions."""
    model = small_model(n_layers=3, positional_embedding_type="rotary")
    _, act = model.run_with_cache(tokens)
    cache = HookedTransformerKeyValueCache.init_cache(model.cfg, model.device, tokens.shape[0])
    model(tokens[:, :6], past_kv_cache=cache)
    out = model(act["resid_pre", 1][:, 6:], start_at_layer=1, past_kv_cache=cache)
    torch.testing.assert_close(out, model(tokens)[:, 6:], atol=1e-5, rtol=1e-5)
    assert cache[0].past_keys.shape[1] == 6 and cache[1].past_keys.shape[1] == tokens.shape[1]  # layer 0 skipped


@pytest.mark.parametrize("entry", ["run_with_cache", "run_with_hooks", "forward"])
def test_stop_at_layer_on_every_entry_point(entry: str, tokens: torch.Tensor) -> None:
    model = small_model()
    _, cache = model.run_with_cache(tokens)
    if entry == "run_with_cache":
        out, partial = model.run_with_cache(tokens, stop_at_layer=1)
        assert "blocks.1.hook_resid_pre" not in partial and "blocks.0.hook_resid_post" in partial
    elif entry == "run_with_hooks":
        out = model.run_with_hooks(tokens, fwd_hooks=[], stop_at_layer=1)
    else:
        out = model.forward(tokens, stop_at_layer=1)
    torch.testing.assert_close(out, cache["resid_pre", 1])
