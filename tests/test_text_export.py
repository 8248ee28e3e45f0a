"""Exporting our GPT-2-shaped model as a Hugging Face GPT-2 checkpoint: transformers and from_pretrained agree."""

from __future__ import annotations

import pytest
import torch

from circuitlab import HookedTransformer, HookedTransformerConfig
from circuitlab.text import train_tokenizer
from circuitlab.text.export import export_gpt2
from circuitlab.text.lm import prepare_text_model

from .conftest import randomize_norm_weights

transformers = pytest.importorskip("transformers")
TEXT = ["When Mr Hart and Mrs Hart went to the shop, Mr Hart gave a drink to Mrs Hart."] * 20


def gpt2_shaped(**overrides) -> HookedTransformer:
    cfg = dict(n_layers=2, d_model=32, n_heads=4, n_ctx=24, d_vocab=300, d_mlp=48, act_fn="gelu_new", seed=0)
    model = HookedTransformer(HookedTransformerConfig(**{**cfg, **overrides}))
    randomize_norm_weights(model)  # every LayerNorm weight and bias nonzero: a dropped one would show
    return prepare_text_model(model)  # GPT-2 has no unembedding bias


def test_export_loads_in_transformers_with_the_same_logits(tmp_path) -> None:
    model = gpt2_shaped()
    tok_dir = tmp_path / "tok"
    from circuitlab.text import save_tokenizer

    save_tokenizer(train_tokenizer(TEXT, vocab_size=300), tok_dir)
    folder = export_gpt2(model, tmp_path / "hf", tokenizer_dir=tok_dir)
    tokens = torch.randint(0, 300, (3, 24), generator=torch.Generator().manual_seed(0))
    ours = model(tokens)

    hf = transformers.GPT2LMHeadModel.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        theirs = hf(tokens).logits
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=0)

    raw = HookedTransformer.from_pretrained_no_processing(folder)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(raw.state_dict()[name], value, atol=0, rtol=0, msg=name)
    processed = HookedTransformer.from_pretrained(folder)  # LayerNorm folded, weights centred
    torch.testing.assert_close(processed(tokens).log_softmax(-1), ours.log_softmax(-1), atol=1e-4, rtol=0)
    assert processed.tokenizer is not None and processed.tokenizer.eos_token_id == 0
    assert processed.to_string(processed.to_tokens("Mr Hart", prepend_bos=False)[0]) == "Mr Hart"


def test_attention_without_scaling_and_relu_export(tmp_path) -> None:
    model = gpt2_shaped(attn_scale=1.0, act_fn="relu")
    hf = transformers.GPT2LMHeadModel.from_pretrained(str(export_gpt2(model, tmp_path / "hf"))).eval()
    tokens = torch.randint(0, 300, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(hf(tokens).logits, model(tokens), atol=1e-4, rtol=0)


def test_attention_only_export_is_the_same_function(tmp_path) -> None:
    """An attention-only model is written with a zero MLP of width 1: transformers and from_pretrained agree."""
    model = gpt2_shaped(attn_only=True)
    folder = export_gpt2(model, tmp_path / "hf")
    tokens = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(2))
    hf = transformers.GPT2LMHeadModel.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(tokens).logits, model(tokens), atol=1e-4, rtol=0)
    loaded = HookedTransformer.from_pretrained(folder)
    assert loaded.cfg.d_mlp == 1 and float(loaded.blocks[0].mlp.W_out.detach().abs().max()) == 0
    torch.testing.assert_close(loaded(tokens).log_softmax(-1), model(tokens).log_softmax(-1), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (dict(normalization_type="RMS"), "normalization_type"),
        (dict(positional_embedding_type="rotary"), "positional_embedding_type"),
    ],
)
def test_models_gpt2_cannot_express_are_refused(tmp_path, overrides, reason) -> None:
    with pytest.raises(ValueError, match=reason):
        export_gpt2(gpt2_shaped(**overrides), tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_nonzero_unembedding_bias_is_refused(tmp_path) -> None:
    model = gpt2_shaped()
    with torch.no_grad():
        model.unembed.b_U[3] = 0.5
    with pytest.raises(ValueError, match="b_U"):
        export_gpt2(model, tmp_path / "hf")
