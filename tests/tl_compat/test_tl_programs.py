"""Short TransformerLens 2.x programs (ARENA 1.2 / TL demos and tests style), run with only the import changed
(`import circuitlab as transformer_lens`), each checked against numbers computed independently here."""

from __future__ import annotations

import pytest
import torch

import circuitlab as transformer_lens
from circuitlab import HookedTransformer, HookedTransformerConfig, utils


@pytest.fixture(scope="module")
def model() -> HookedTransformer:
    cfg = HookedTransformerConfig(
        d_model=32, d_head=8, n_heads=4, n_layers=3, n_ctx=16, d_vocab=40, d_mlp=64, act_fn="gelu", seed=0
    )
    return HookedTransformer(cfg).eval()


def test_all_composition_scores_matches_dense_products(model: HookedTransformer) -> None:
    scores = {mode: model.all_composition_scores(mode) for mode in "QKV"}
    W_OV = (model.W_V @ model.W_O).detach()  # [layer, head, d_model, d_model]
    W_QK = (model.W_Q @ model.W_K.transpose(-1, -2)).detach()
    rights = {"Q": W_QK, "K": W_QK.transpose(-1, -2), "V": W_OV}
    L, H = model.cfg.n_layers, model.cfg.n_heads
    for mode, right in rights.items():
        assert scores[mode].shape == (L, H, L, H)
        for l1, h1, l2, h2 in [(0, 1, 1, 2), (0, 3, 2, 0), (1, 0, 2, 3)]:
            a, b = W_OV[l1, h1], right[l2, h2]
            expected = (a @ b).norm() / (a.norm() * b.norm())
            torch.testing.assert_close(scores[mode][l1, h1, l2, h2], expected, rtol=1e-4, atol=1e-6)
        assert scores[mode][1, :, 1].abs().sum() == 0 and scores[mode][2, :, 0].abs().sum() == 0  # not later: 0
    with pytest.raises(ValueError, match="mode"):
        model.all_composition_scores("X")


def test_hook_ctx_keeps_values_across_a_run(model: HookedTransformer) -> None:
    tokens = torch.randint(0, 40, (2, 6), generator=torch.Generator().manual_seed(0))

    def hook(z: torch.Tensor, hook) -> None:
        hook.ctx["z_norm"] = z.norm()

    model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_z", hook)], reset_hooks_end=False)
    ctx = model.blocks[1].attn.hook_z.ctx
    model.reset_hooks()  # TL: clears contexts by giving each hook point a fresh dict
    _, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(ctx["z_norm"], cache["z", 1].norm())
    assert model.blocks[1].attn.hook_z.ctx == {}


def test_manual_attention_with_attn_mask_and_ignore(model: HookedTransformer) -> None:
    """ARENA 1.1 / TL tests: recompute the pattern from q, k with `attn.mask` and `attn.IGNORE`."""
    tokens = torch.randint(0, 40, (2, 7), generator=torch.Generator().manual_seed(1))
    _, cache = model.run_with_cache(tokens)
    attn = model.blocks[0].attn
    n = model.cfg.n_ctx
    assert attn.mask.shape == (n, n) and attn.mask.dtype == torch.bool
    assert torch.equal(attn.mask, torch.ones(n, n, dtype=torch.bool).tril())
    assert attn.IGNORE.item() == float("-inf")
    q, k = cache["q", 0], cache["k", 0]  # [batch, pos, head, d_head]
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / model.cfg.d_head**0.5
    pos = tokens.shape[1]
    scores = torch.where(attn.mask[:pos, :pos], scores, attn.IGNORE)
    torch.testing.assert_close(scores.softmax(-1), cache["pattern", 0], rtol=1e-5, atol=1e-6)
    local = HookedTransformerConfig(
        d_model=16, d_head=8, n_layers=1, n_ctx=6, d_vocab=10, attn_only=True, attn_types=["local"], window_size=2
    )
    mask = HookedTransformer(local).blocks[0].attn.mask
    assert torch.equal(mask, torch.ones(6, 6, dtype=torch.bool).tril() & ~torch.ones(6, 6, dtype=torch.bool).tril(-2))


def test_config_takes_transformer_lens_fields() -> None:
    cfg = HookedTransformerConfig(
        d_model=32, d_head=8, n_layers=2, n_ctx=16, d_vocab=40, attn_only=True, init_mode="gpt2",
        initializer_range=0.02, n_devices=1, final_rms=False, scale_attn_by_inverse_layer_idx=False,
        tokenizer_prepends_bos=None,
    )  # fmt: skip
    assert cfg.init_range == cfg.initializer_range == 0.02
    assert HookedTransformerConfig.from_dict(cfg.to_dict()) == cfg
    std = HookedTransformer(cfg).W_Q.std().item()
    assert 0.015 < std < 0.025  # initializer_range reaches the weights
    derived = HookedTransformerConfig(d_model=64, d_head=8, n_layers=1, n_ctx=8, d_vocab=10, initializer_range=-1.0)
    assert derived.initializer_range == derived.init_range == pytest.approx(0.1)  # TL: 0.8 / sqrt(d_model)
    local = HookedTransformerConfig(
        d_model=16, d_head=8, n_layers=2, n_ctx=8, d_vocab=10, attn_types=["global", "local"], window_size=2
    )
    assert local.use_local_attn is True
    with pytest.raises(ValueError, match=r"final_rms=True.*does not implement"):
        HookedTransformerConfig(d_model=16, d_head=8, n_layers=1, n_ctx=8, d_vocab=10, final_rms=True)
    with pytest.raises(ValueError, match="contradicts"):
        HookedTransformerConfig(d_model=16, d_head=8, n_layers=1, n_ctx=8, d_vocab=10, init_range=0.1,
                                initializer_range=0.2)  # fmt: skip


def test_set_tokenizer_records_whether_it_prepends_bos(model: HookedTransformer) -> None:
    class Tok:
        pad_token, eos_token, bos_token, padding_side = "<e>", "<e>", "<e>", "right"

        def __init__(self, ids: list[int]) -> None:
            self.ids = ids

        def encode(self, text: str) -> list[int]:
            return list(self.ids)

    old = model.tokenizer
    try:
        model.set_tokenizer(Tok([0]))
        assert model.cfg.tokenizer_prepends_bos is True
        model.set_tokenizer(Tok([]))
        assert model.cfg.tokenizer_prepends_bos is False
    finally:
        model.tokenizer, model.cfg.tokenizer_prepends_bos = old, None


def test_utils_sample_logits_and_offset_position_ids() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0], [5.0, 0.0, 1.0, 4.0]])
    assert utils.sample_logits(logits, temperature=0.0).tolist() == [1, 0]
    torch.manual_seed(0)
    assert utils.sample_logits(logits, top_k=1).tolist() == [1, 0]  # TL's positional order: top_k first
    assert utils.sample_logits(logits, None, 0.01).tolist() == [1, 0]  # top_p second
    assert set(utils.sample_logits(logits.repeat(50, 1), top_k=2).tolist()) <= {1, 3, 0}
    tokens = torch.tensor([[1, 1, 2, 2], [2, 2, 2, 2]])
    penalised = utils.sample_logits(logits, temperature=0.0, freq_penalty=0.0, tokens=tokens)
    assert penalised.tolist() == [1, 0]
    assert utils.sample_logits(logits.clone(), top_k=1, freq_penalty=5.0, tokens=tokens).tolist() == [3, 0]
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])  # left padding
    assert utils.get_offset_position_ids(0, mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]
    assert utils.get_offset_position_ids(3, mask).tolist() == [[1, 2], [3, 4]]
    assert transformer_lens.utils is utils


def test_abstract_attention_and_lens_handle(model: HookedTransformer) -> None:
    from circuitlab.components import AbstractAttention
    from circuitlab.hook_points import LensHandle

    attns = [m for m in model.modules() if isinstance(m, AbstractAttention)]
    assert attns == [block.attn for block in model.blocks]
    seen = []
    handle = model.blocks[0].hook_resid_pre.add_hook(lambda x, hook: seen.append(hook.name))
    assert isinstance(handle, LensHandle) and handle.is_permanent is False
    model(torch.zeros(1, 3, dtype=torch.long))
    handle.hook.remove()
    model(torch.zeros(1, 3, dtype=torch.long))
    assert seen == ["blocks.0.hook_resid_pre"]


def test_generate_text_drops_special_tokens_and_is_a_string_for_one_sequence(tmp_path) -> None:
    pytest.importorskip("transformers")
    from ._tl_model_tiny import tiny_folder

    lm = HookedTransformer.from_pretrained(tiny_folder(tmp_path / "tiny"))
    tokens = lm.to_tokens("the cat")  # [1, pos], BOS first
    out = lm.generate(tokens, max_new_tokens=3, do_sample=False, verbose=False)
    special = set(lm.tokenizer.all_special_ids)
    expected = lm.tokenizer.decode([t for t in out[0].tolist() if t not in special])
    text = lm.generate(tokens, max_new_tokens=3, do_sample=False, verbose=False, return_type="str")
    assert text == expected and isinstance(text, str)  # TL: one sequence -> a str, BOS not in it
    assert lm.generate("the cat", max_new_tokens=3, do_sample=False, verbose=False) == expected
    both = lm.generate(lm.to_tokens(["the cat", "the dog"]), max_new_tokens=2, do_sample=False, return_type="str")
    assert isinstance(both, list) and len(both) == 2 and not any("<|endoftext|>" in t for t in both)


def test_tl_code_imports_what_transformer_lens_installs() -> None:
    """TL-written code imports einops and jaxtyping beside transformer_lens; both come with circuitlab."""
    import einops
    import torch
    from jaxtyping import Float

    import circuitlab as transformer_lens

    model = transformer_lens.HookedTransformer(
        transformer_lens.HookedTransformerConfig(n_layers=1, d_model=16, n_heads=2, n_ctx=8, d_vocab=10, seed=0)
    )

    def head_pattern(cache: transformer_lens.ActivationCache) -> Float[torch.Tensor, "head q k"]:  # noqa: F722
        return einops.rearrange(cache["pattern", 0], "1 h q k -> h q k")

    _, cache = model.run_with_cache(torch.arange(8)[None] % 10)
    assert head_pattern(cache).shape == (2, 8, 8)
