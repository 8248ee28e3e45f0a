"""TransformerLens 2.x HookedTransformer surface: switches, hook management, tokenizer-aware construction."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from circuitlab import HookedTransformer, HookedTransformerConfig
from circuitlab.utils import get_attention_mask

from .conftest import small_cfg, small_model
from .tiny_hf import save_tiny_gpt2

CORPUS = ["the cat sat on the mat", "a dog sat on a log and the cat ran", "Mr Hart gave a drink to Mrs Hart"] * 20
EOS = "<|endoftext|>"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    return save_tiny_gpt2(tmp_path_factory.mktemp("tok"), CORPUS, special=EOS, n_positions=40)


@pytest.fixture(scope="module")
def lm(folder: Path) -> HookedTransformer:
    return HookedTransformer.from_pretrained(folder)


# ---- set_use_* ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("setter", "hook"),
    [
        ("set_use_attn_result", "blocks.0.attn.hook_result"),
        ("set_use_split_qkv_input", "blocks.0.hook_q_input"),
        ("set_use_attn_in", "blocks.0.hook_attn_in"),
        ("set_use_hook_mlp_in", "blocks.0.hook_mlp_in"),
    ],
)
def test_set_use_switches_turn_their_hook_on_and_off(setter: str, hook: str, tokens: torch.Tensor) -> None:
    model = small_model()
    plain = model(tokens)
    assert hook not in model.run_with_cache(tokens)[1]
    getattr(model, setter)(True)
    logits, cache = model.run_with_cache(tokens)
    assert hook in cache
    torch.testing.assert_close(logits, plain, atol=1e-5, rtol=1e-5)
    getattr(model, setter)(False)
    assert hook not in model.run_with_cache(tokens)[1]


def test_set_use_switch_errors() -> None:
    with pytest.raises(ValueError, match="attention-only"):
        small_model(attn_only=True).set_use_hook_mlp_in(True)
    with pytest.raises(ValueError, match="grouped-query"):
        small_model(n_key_value_heads=2).set_use_attn_in(True)
    model = small_model()
    model.set_use_split_qkv_input(True)
    with pytest.raises(ValueError, match="exclusive"):
        model.set_use_attn_in(True)
    with pytest.raises(TypeError, match="True or False"):
        model.set_use_attn_result("yes")


def test_set_ungroup_grouped_query_attention_repeats_keys_per_head(tokens: torch.Tensor) -> None:
    model = small_model(n_key_value_heads=2, positional_embedding_type="rotary")
    plain, grouped = model.run_with_cache(tokens)
    model.set_ungroup_grouped_query_attention(True)
    logits, ungrouped = model.run_with_cache(tokens)
    torch.testing.assert_close(logits, plain, atol=1e-5, rtol=1e-5)
    assert grouped["k", 0].shape[2] == 2 and ungrouped["k", 0].shape[2] == 4
    torch.testing.assert_close(ungrouped["k", 0], grouped["k", 0].repeat_interleave(2, dim=2))


# ---- hooks --------------------------------------------------------------------------------------------
def test_perma_hooks_survive_resets_until_including_permanent(tokens: torch.Tensor) -> None:
    model = small_model()
    plain = model(tokens)
    model.add_perma_hook("blocks.0.hook_resid_post", lambda x, hook: x * 0)
    model.add_hook("blocks.1.hook_resid_post", lambda x, hook: x + 1)
    with model.hooks(fwd_hooks=[]):
        pass
    model.reset_hooks()
    ablated = model(tokens)
    assert not torch.allclose(ablated, plain)
    hp = model.hook_dict["blocks.0.hook_resid_post"]
    assert len(hp.fwd_hooks) == 1 and hp.fwd_hooks[0].is_permanent
    model.remove_all_hook_fns()
    assert len(hp.fwd_hooks) == 1
    model.reset_hooks(including_permanent=True)
    assert not hp.fwd_hooks
    torch.testing.assert_close(model(tokens), plain)


def test_handles_carry_hook_and_context_level(tokens: torch.Tensor) -> None:
    model = small_model()
    hp = model.hook_dict["blocks.0.hook_resid_pre"]
    with model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: None)]):
        handle = hp.fwd_hooks[0]
        assert handle.context_level == 1 and handle.is_permanent is False
        with model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: None)]):
            assert hp.fwd_hooks[1].context_level == 2
        handle.hook.remove()
        assert not hp.fwd_hooks
    assert model.hook_points() == list(model.hook_dict.values())
    assert model.mod_dict["blocks.0.attn"] is model.blocks[0].attn
    assert model.hook_dict["blocks.0.attn.hook_pattern"] is model.blocks[0].attn.hook_pattern


def test_backward_hook_may_return_a_tuple(tokens: torch.Tensor) -> None:
    model = small_model()
    name = "blocks.0.hook_resid_post"

    def grad_of(hook_fn) -> torch.Tensor:
        model.zero_grad()
        model.run_with_hooks(tokens, return_type="loss", bwd_hooks=[(name, hook_fn)]).backward()
        return model.embed.W_E.grad.clone()

    doubled = grad_of(lambda g, hook: (g * 2,))
    doubled_plain = grad_of(lambda g, hook: g * 2)
    untouched = grad_of(lambda g, hook: None)
    torch.testing.assert_close(doubled, doubled_plain)
    assert not torch.allclose(doubled, untouched)
    with pytest.raises(ValueError, match="tuple of 2"):
        grad_of(lambda g, hook: (g, g))


@pytest.mark.parametrize("pos_slice", [-1, slice(2, 5), [0, 3], (1, 4)])
def test_run_with_cache_pos_slice(pos_slice, tokens: torch.Tensor) -> None:
    model = small_model()
    _, full = model.run_with_cache(tokens)
    _, part = model.run_with_cache(tokens, pos_slice=pos_slice)
    index = slice(*pos_slice) if isinstance(pos_slice, tuple) else pos_slice
    index = [index] if isinstance(index, int) else index  # an int keeps the dim (TransformerLens)
    index = torch.tensor(index) if isinstance(index, list) else index
    torch.testing.assert_close(part["blocks.0.hook_resid_pre"], full["blocks.0.hook_resid_pre"][:, index])
    torch.testing.assert_close(part["blocks.1.attn.hook_z"], full["blocks.1.attn.hook_z"][:, index])
    torch.testing.assert_close(part["blocks.1.attn.hook_pattern"], full["blocks.1.attn.hook_pattern"][:, :, index])


# ---- config ---------------------------------------------------------------------------------------------
def test_config_tl_fields() -> None:
    cfg = small_cfg(attention_dir="bidirectional")
    assert cfg.causal is False and cfg.attention_dir == "bidirectional"
    cfg.attention_dir = "causal"
    assert cfg.causal is True
    cfg.causal = False
    assert cfg.attention_dir == "bidirectional"
    assert HookedTransformerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="attention_dir"):
        small_cfg(attention_dir="sideways")
    with pytest.raises(ValueError, match="contradicts"):
        small_cfg(attention_dir="causal", causal=False)
    assert HookedTransformerConfig.unwrap(cfg.to_dict()) == cfg and HookedTransformerConfig.unwrap(cfg) is cfg
    assert small_cfg(act_fn="solu_ln").is_layer_norm_activation() and not small_cfg().is_layer_norm_activation()
    assert small_cfg(original_architecture="GPT2LMHeadModel").original_architecture == "GPT2LMHeadModel"
    assert small_cfg(default_prepend_bos=False).default_prepend_bos is False


def test_alibi_penalises_distance_per_head(tokens: torch.Tensor) -> None:
    model = small_model(positional_embedding_type="alibi", n_layers=1)
    _, cache = model.run_with_cache(tokens)
    scores = cache["blocks.0.attn.hook_attn_scores"][0]  # [head, q, k]
    q, k = cache["q", 0][0], cache["k", 0][0]  # [pos, head, d_head]
    plain = torch.einsum("qhe,khe->hqk", q, k) / model.cfg.attn_scale
    bias = (scores - plain)[:, 5, :6]  # query 5, keys 0..5
    slopes = 2 ** (-8 * torch.arange(1, 5) / 4)
    torch.testing.assert_close(bias, slopes[:, None] * (torch.arange(6) - 5.0)[None], atol=1e-5, rtol=1e-5)


def test_shortformer_adds_positions_to_queries_and_keys_only(tokens: torch.Tensor) -> None:
    model = small_model(positional_embedding_type="shortformer")
    _, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(cache["resid_pre", 0], cache["hook_embed"])  # not in the residual stream
    assert "hook_pos_embed" in cache and model.W_pos.shape == (24, 32)


# ---- tokenizer-aware construction --------------------------------------------------------------------
def test_model_from_config_and_tokenizer(lm: HookedTransformer, folder: Path) -> None:
    cfg = HookedTransformerConfig(n_layers=1, d_model=16, n_heads=2, n_ctx=16, d_vocab=-1, seed=0)
    model = HookedTransformer(cfg, lm.tokenizer)
    size = max(lm.tokenizer.get_vocab().values()) + 1
    assert model.cfg.d_vocab == size == model.cfg.d_vocab_out and model.W_E.shape[0] == size
    assert model.tokenizer is lm.tokenizer
    assert model("the cat").shape[-1] == size
    named = HookedTransformer(
        HookedTransformerConfig(**{**cfg.to_dict(), "d_vocab": -1, "tokenizer_name": str(folder)})
    )
    assert named.tokenizer is not None and named.cfg.d_vocab == size
    with pytest.raises(ValueError, match="tokenizer"):
        HookedTransformer(HookedTransformerConfig(**{**cfg.to_dict(), "d_vocab": -1, "d_vocab_out": -1}))
    with pytest.raises(TypeError, match="move_to_device"):
        HookedTransformer(cfg.to_dict() | {"d_vocab": 50}, None, "cpu")


def test_tokens_to_residual_directions_of_strings(lm: HookedTransformer) -> None:
    token = lm.to_single_token(" cat")
    torch.testing.assert_close(lm.tokens_to_residual_directions(" cat"), lm.W_U[:, token])
    both = lm.tokens_to_residual_directions([" cat", " dog"])
    assert both.shape == (2, lm.cfg.d_model)
    assert lm.to_single_str_token(token) == " cat"
    with pytest.raises(TypeError, match="no tokenizer"):
        small_model().tokens_to_residual_directions(" cat")


def test_get_attention_mask_left_and_right(lm: HookedTransformer) -> None:
    left = lm.to_tokens(["the cat", "a dog sat on a log"], padding_side="left")
    right = lm.to_tokens(["the cat", "a dog sat on a log"], padding_side="right")
    n_short = lm.to_tokens("the cat").shape[1]
    pad = left.shape[1] - n_short
    mask_left = get_attention_mask(lm.tokenizer, left, prepend_bos=True, padding_side="left")
    # BOS == pad here: the last leading pad is the prompt's own BOS and stays real
    assert mask_left[0].tolist() == [0] * pad + [1] * n_short and mask_left[1].all()
    lm.tokenizer.padding_side = "right"
    mask_right = get_attention_mask(lm.tokenizer, right, prepend_bos=True)
    assert mask_right[0].tolist() == [1] * n_short + [0] * pad


def test_from_pretrained_tl_arguments(folder: Path) -> None:
    model = HookedTransformer.from_pretrained(folder, default_prepend_bos=False, move_to_device=True)
    assert model.cfg.default_prepend_bos is False and model.cfg.original_architecture == "GPT2LMHeadModel"
    assert model.cfg.tokenizer_name == str(folder)
    with pytest.raises(ValueError, match="n_devices"):
        HookedTransformer.from_pretrained(folder, n_devices=2)
    positional = HookedTransformer.from_pretrained(folder, True, True, False)  # fold_ln, centre, no centre_unembed
    assert positional.W_U.mean(-1).abs().max() > 1e-4


def test_process_weights_in_place_keeps_the_logits(folder: Path) -> None:
    model = HookedTransformer.from_pretrained_no_processing(folder)
    tokens = torch.randint(0, model.cfg.d_vocab, (2, 8))
    before = model(tokens).log_softmax(-1)
    model.process_weights_()
    assert model.cfg.normalization_type == "LNPre" and not hasattr(model.blocks[0].ln1, "w")
    torch.testing.assert_close(model(tokens).log_softmax(-1), before, atol=1e-4, rtol=0)
    assert "blocks.0.ln1.hook_scale" in model.hook_dict
