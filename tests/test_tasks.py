"""Task generators: shapes, determinism, metadata checked by hand, and loss masks on exactly the
predictable positions."""

from __future__ import annotations

import pytest
import torch

from circuitlab.tasks import (
    IOI,
    TASKS,
    BalancedParentheses,
    ModularAddition,
    MostFrequent,
    Periodic,
    RepeatedTokens,
    WordVocab,
    make_task,
)


@pytest.mark.parametrize("name", list(TASKS))
def test_shapes_determinism_and_vocab(name: str) -> None:
    task = make_task(name)
    a, b, c = task.generate(16, seed=1), task.generate(16, seed=1), task.generate(16, seed=2)
    assert a.tokens.shape == a.targets.shape == a.loss_mask.shape == (16, task.seq_len)
    assert a.tokens.dtype == torch.long and a.loss_mask.dtype == torch.bool
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.loss_mask, b.loss_mask)
    assert not torch.equal(a.tokens, c.tokens)
    assert int(a.tokens.min()) >= 0 and int(a.tokens.max()) < task.d_vocab
    assert int(a.targets[a.loss_mask].max()) < task.d_vocab and a.loss_mask.any(1).all()
    assert task.to_dict()["name"] == name


def test_repeated_tokens_mask_and_metadata() -> None:
    task = RepeatedTokens(vocab=64, length=40, min_chunk=3, max_chunk=8, max_gap=5)
    batch = task.generate(256, seed=0)
    toks, meta = batch.tokens, batch.metadata
    offsets = meta["repeat_start"] - meta["first_start"]
    assert len(set(offsets.tolist())) > 5  # the distance between copies varies
    for row in range(256):
        seq = toks[row].tolist()
        s1, s2, n = (int(meta[k][row]) for k in ("first_start", "repeat_start", "chunk_len"))
        assert seq[0] == 0 and seq[s2 : s2 + n] == seq[s1 : s1 + n]
        # A token is predictable exactly when it already appeared: count by hand.
        seen = [seq[p] in seq[:p] for p in range(len(seq))]
        predictable = [seen[p] and p - 1 >= 0 and seen[p - 1] for p in range(len(seq))]
        scored = batch.loss_mask[row].tolist()
        assert scored == [*predictable[1:], False]
        prev = meta["prev_occurrence"][row].tolist()
        assert all(prev[p] == (seq.index(seq[p]) if seen[p] else -1) for p in range(len(seq)))
        assert torch.equal(batch.targets[row, :-1], toks[row, 1:])
    with pytest.raises(ValueError, match=r"RepeatedTokens.length=20 is invalid"):
        RepeatedTokens(length=20)


def test_periodic_sequences() -> None:
    task = Periodic(vocab=50, length=40, min_period=3, max_period=7)
    batch = task.generate(64, seed=0)
    for row in range(64):
        f = int(batch.metadata["period"][row])
        seq = batch.tokens[row].tolist()
        assert seq[0] == 1 and 3 <= f <= 7 and all(seq[p] == seq[p - f] for p in range(1 + f, 40))
        assert min(seq[1:]) >= 3
    assert batch.loss_mask[:, :-1].all() and not batch.loss_mask[:, -1].any()
    assert len(set(batch.metadata["period"].tolist())) == 5


def test_periodic_fixed_dataset_draws_only_its_sequences() -> None:
    task = Periodic(vocab=50, length=40, min_period=3, max_period=7, n_sequences=8, dataset_seed=5)
    pool = {tuple(r) for r in task.generate(400, seed=1).tokens.tolist()}
    assert len(pool) == 8  # every batch comes from the same 8 sequences...
    again = Periodic(vocab=50, length=40, min_period=3, max_period=7, n_sequences=8, dataset_seed=5)
    assert {tuple(r) for r in again.generate(400, seed=2).tokens.tolist()} == pool  # ...fixed by dataset_seed
    other = Periodic(vocab=50, length=40, min_period=3, max_period=7, n_sequences=8, dataset_seed=6)
    assert {tuple(r) for r in other.generate(400, seed=1).tokens.tolist()} != pool
    assert len({tuple(r) for r in Periodic(vocab=50, length=40).generate(400, seed=1).tokens.tolist()}) == 400


def test_most_frequent_by_hand() -> None:
    batch = MostFrequent(vocab=8, length=12).generate(32, seed=0)
    for row in range(32):
        seq = batch.tokens[row].tolist()
        for p in range(12):
            counts = {t: seq[: p + 1].count(t) for t in set(seq[: p + 1])}
            best = max(counts.values())
            assert batch.targets[row, p] == min(t for t, c in counts.items() if c == best)


def test_modular_addition_split() -> None:
    train, test = ModularAddition(p=11, split="train"), ModularAddition(p=11, split="test")
    pairs_train = {tuple(x) for x in train.pairs().tolist()}
    pairs_test = {tuple(x) for x in test.pairs().tolist()}
    assert not pairs_train & pairs_test and len(pairs_train | pairs_test) == 121
    assert len(pairs_train) == round(0.3 * 121)
    batch = train.generate(50, seed=0)
    a, b = batch.tokens[:, 0], batch.tokens[:, 1]
    assert (batch.tokens[:, 2] == 11).all() and torch.equal(batch.targets[:, 2], (a + b) % 11)
    assert all((x, y) in pairs_train for x, y in zip(a.tolist(), b.tolist(), strict=True))
    assert batch.loss_mask.sum() == 50 and batch.loss_mask[:, 2].all()


def test_balanced_parentheses_labels() -> None:
    batch = BalancedParentheses(n_brackets=10).generate(400, seed=0)
    labels = batch.metadata["balanced"]
    assert 0.3 < labels.float().mean() < 0.8
    for row in range(400):
        depth, ok = 0, True
        for t in batch.tokens[row, 1:].tolist():
            depth += 1 if t == 1 else -1
            ok &= depth >= 0
        assert bool(labels[row]) == (ok and depth == 0)
        assert batch.targets[row, -1] == (4 if ok and depth == 0 else 3)


def test_ioi_word_level_prompts() -> None:
    task = IOI()
    batch = task.generate(64, seed=0)
    meta = batch.metadata
    vocab = task.vocab
    for row in range(64):
        words = [vocab.itos[t] for t in batch.tokens[row].tolist()]
        io, s = vocab.itos[meta["answer"][row]], vocab.itos[meta["distractor"][row]]
        end = int(meta["end_pos"][row])
        assert words[int(meta["io_pos"][row])] == io and words[int(meta["s1_pos"][row])] == s
        assert words[int(meta["s2_pos"][row])] == s and words[end] == "to" and words[0] == "<bos>"
        assert batch.targets[row, end] == meta["answer"][row] and batch.loss_mask[row].sum() == 1
        corrupt = [vocab.itos[t] for t in meta["corrupted_tokens"][row].tolist()]
        diff = [p for p in range(len(words)) if corrupt[p] != words[p]]
        assert diff == [int(meta["s2_pos"][row])] and corrupt[diff[0]] not in (io, s)
        assert all(w == "<pad>" for w in words[end + 1 :])
    assert 0.3 < meta["abba"].float().mean() < 0.7


class _SpaceTokenizer:
    """A stand-in for a BPE tokenizer: words keep their leading space, like GPT-2's."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {"<|endoftext|>": 0}
        self.bos_token_id = self.pad_token_id = 0

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        import re

        pieces = re.findall(r" ?[A-Za-z]+| ?[^\sA-Za-z]", text)
        pieces = [p for w in pieces for p in (["Chris", "topher"] if w.strip() == "Christopher" else [w])]
        return [self.vocab.setdefault(p, len(self.vocab)) for p in pieces]

    def decode(self, ids: list[int]) -> str:
        inverse = {v: k for k, v in self.vocab.items()}
        return "".join(inverse[i] for i in ids)

    def __len__(self) -> int:
        return len(self.vocab)


def test_ioi_with_a_tokenizer_skips_multi_token_names() -> None:
    tok = _SpaceTokenizer()
    task = IOI(names=("Mary", "John", "Christopher", "Tom"), tokenizer=tok)
    assert task.skipped_names == ["Christopher"] and task.used_names == ["Mary", "John", "Tom"]
    batch = task.generate(8, seed=0)
    row = 0
    end = int(batch.metadata["end_pos"][row])
    text = tok.decode(batch.tokens[row, 1 : end + 1].tolist())
    template = task.templates[int(batch.metadata["template"][row])]
    io, s = tok.decode([int(batch.metadata["answer"][row])]), tok.decode([int(batch.metadata["distractor"][row])])
    a, b = (io, s) if batch.metadata["abba"][row] else (s, io)
    assert text == template.format(A=a.strip(), B=b.strip(), S=s.strip())
    with pytest.raises(ValueError, match="need 3 single-token names"):
        IOI(names=("Mary", "Christopher", "John"), tokenizer=_SpaceTokenizer())


def test_word_vocab_and_bad_names() -> None:
    vocab = WordVocab(["Hello, world."])
    assert vocab.encode("world, Hello") == [vocab.stoi["world"], vocab.stoi[","], vocab.stoi["Hello"]]
    with pytest.raises(ValueError, match="did you mean"):
        make_task("repeated_token")
    with pytest.raises(ValueError, match="batch_size"):
        RepeatedTokens().generate(0)
