"""Tokenizer helpers and generate, on a byte-level BPE tokenizer the test trains and saves itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from circuitlab import HookedTransformer

from .tiny_hf import save_tiny_gpt2

tf = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

CORPUS = [
    "When Mr Hart and Mrs Hart went to the shop, Mr Hart gave a drink to Mrs Hart.",
    "The cat sat on the mat and the dog sat on the log.",
    "Mr Hart likes the shop; the shop likes Mr Hart.",
] * 20
EOS = "<|endoftext|>"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return save_tiny_gpt2(tmp_path_factory.mktemp("tok"), CORPUS, special=EOS, n_positions=40)


@pytest.fixture(scope="module")
def model(folder: Path) -> HookedTransformer:
    return HookedTransformer.from_pretrained(folder)


def test_tokenizer_comes_from_the_folder(model: HookedTransformer, folder: Path) -> None:
    assert model.tokenizer is not None and model.tokenizer.eos_token == EOS
    assert HookedTransformer.from_pretrained(folder, tokenizer=False).tokenizer is None
    text = "Mr Hart sat on the mat"
    ids = model.tokenizer(text)["input_ids"]
    assert model.to_tokens(text).tolist() == [[model.tokenizer.bos_token_id, *ids]]
    assert model.to_tokens(text, prepend_bos=False).tolist() == [ids]


def test_round_trips(model: HookedTransformer) -> None:
    text = "When Mr Hart went to the shop"
    tokens = model.to_tokens(text, prepend_bos=False)
    assert model.to_string(tokens[0]) == text
    assert model.to_string(tokens) == [text]
    pieces = model.to_str_tokens(text, prepend_bos=False)
    assert "".join(pieces) == text and len(pieces) == tokens.shape[1]
    assert model.to_str_tokens(text)[0] == EOS
    assert model.to_str_tokens(tokens) == pieces
    both = model.to_str_tokens(["the cat", "the dog"], prepend_bos=False)
    assert both == [
        model.to_str_tokens("the cat", prepend_bos=False),
        model.to_str_tokens("the dog", prepend_bos=False),
    ]
    assert "".join(both[1]) == "the dog"


def test_to_single_token_and_the_leading_space_pitfall(model: HookedTransformer) -> None:
    vocab = model.tokenizer.get_vocab()
    assert "ĠHart" in vocab and "Hart" not in vocab  # the corpus only ever has " Hart"
    assert model.to_single_token(" Hart") == vocab["ĠHart"]
    with pytest.raises(ValueError, match=r"'Hart' is \d tokens .* not a single token .*try ' Hart'"):
        model.to_single_token("Hart")


def test_get_token_position(model: HookedTransformer) -> None:
    text = "When Mr Hart met Mr Hart"
    pieces = model.to_str_tokens(text, prepend_bos=False)
    first, last = pieces.index(" Hart"), len(pieces) - 1
    assert pieces[last] == " Hart" and first < last
    assert model.get_token_position(" Hart", text, prepend_bos=False) == first
    assert model.get_token_position(" Hart", text) == first + 1  # after BOS
    assert model.get_token_position(" Hart", text, mode="last") == last + 1
    assert model.get_token_position(model.to_single_token(" Hart"), model.to_tokens(text)) == first + 1
    with pytest.raises(ValueError, match="does not occur"):
        model.get_token_position(" cat", text)


def test_forward_takes_text_and_pads_lists(model: HookedTransformer) -> None:
    text = "the cat sat"
    torch.testing.assert_close(model(text), model(model.to_tokens(text)))
    batch = model.to_tokens(["the cat", "the cat sat on the mat"])
    assert batch.shape[0] == 2
    n_short = model.to_tokens("the cat").shape[1]
    assert batch.shape[1] > n_short and batch[0, n_short:].eq(model.tokenizer.pad_token_id).all()
    left = model.to_tokens(["the cat", "the cat sat on the mat"], padding_side="left")
    assert left[0, -n_short:].tolist() == batch[0, :n_short].tolist() and left[1].tolist() == batch[1].tolist()


def test_greedy_generate_matches_transformers(model: HookedTransformer, folder: Path) -> None:
    plain = HookedTransformer.from_pretrained_no_processing(folder)
    prompt = plain.to_tokens("Mr Hart")
    ours = plain.generate(prompt, max_new_tokens=8, do_sample=False, stop_at_eos=False)
    hf = tf.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()
    theirs = hf.generate(prompt, max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=0)
    assert ours.tolist() == theirs.tolist()
    text = model.generate("Mr Hart", max_new_tokens=8, do_sample=False, stop_at_eos=False)
    assert isinstance(text, str) and text.startswith("Mr Hart")
    assert model.to_tokens(text, prepend_bos=False).shape[1] >= 2


def test_generate_stops_at_eos_and_sampling_is_seeded(model: HookedTransformer) -> None:
    prompt = model.to_tokens(["Mr Hart", "the cat"][0])
    greedy = model.generate(prompt, max_new_tokens=6, do_sample=False, stop_at_eos=False)
    eos = int(greedy[0, prompt.shape[1]])  # pretend the first new token is the end of text
    stopped = model.generate(prompt, max_new_tokens=6, do_sample=False, eos_token_id=eos)
    assert stopped.tolist() == greedy[:, : prompt.shape[1] + 1].tolist()
    # in a batch, a finished row is padded with EOS while the other goes on
    pair = torch.cat([prompt, model.to_tokens("Mrs Hart")[:, : prompt.shape[1]]])
    both = model.generate(pair, max_new_tokens=6, do_sample=False, stop_at_eos=False)
    eos = int(both[0, prompt.shape[1]])
    assert eos not in both[1, prompt.shape[1] :].tolist()  # precondition: row 1 never produces it
    stopped = model.generate(pair, max_new_tokens=6, do_sample=False, eos_token_id=eos)
    assert stopped[1].tolist() == both[1].tolist() and (stopped[0, prompt.shape[1] :] == eos).all()
    a = model.generate(prompt, max_new_tokens=6, temperature=1.5, seed=3, stop_at_eos=False)
    b = model.generate(prompt, max_new_tokens=6, temperature=1.5, seed=3, stop_at_eos=False)
    assert a.tolist() == b.tolist() and a.shape == (1, prompt.shape[1] + 6)
    top1 = model.generate(prompt, max_new_tokens=6, top_k=1, seed=0, stop_at_eos=False)
    assert top1.tolist() == greedy.tolist()
    assert model.generate(["Mr Hart", "the cat sat"], max_new_tokens=2, do_sample=False, stop_at_eos=False)[
        1
    ].startswith("the cat sat")


def test_models_without_tokenizer_say_so() -> None:
    from circuitlab import HookedTransformerConfig

    model = HookedTransformer(HookedTransformerConfig(n_layers=1, d_model=8, n_heads=2, n_ctx=4, d_vocab=5))
    assert model.tokenizer is None
    with pytest.raises(ValueError, match="no tokenizer"):
        model.to_tokens("hi")
    with pytest.raises(TypeError, match="tokenizer"):
        model("hi")
