"""Models whose circuit is known by construction, each with its task and its true edge set.

The true edges are the ones along which the clean / corrupted difference reaches the metric: an edge that
carries only what both runs share (here the positions, which the corruptions keep) changes nothing when
ablated, so it is not part of the circuit under that intervention. Every model has distractors that write
clean / corrupted-dependent values into the residual stream that do not reach the metric; `gated_mlp` is
built so that first-order attribution (EAP) ranks its circuit wrongly.
"""

from __future__ import annotations

import torch

from ..analysis.discovery.problems import Problem, TargetLogitDiff, unrepeated_tokens
from .builder import Builder

STRENGTH = 12.0  # attention score of an intended match: softmax weight ~1 - n e^-12


def _distinct(batch: int, n: int, low: int, high: int, gen: torch.Generator) -> torch.Tensor:
    """[batch, n] tokens drawn from [low, high) without repetition inside a row."""
    return low + torch.rand(batch, high - low, generator=gen).argsort(-1)[:, :n]


def induction(batch: int = 16, chunk: int = 8, d_vocab: int = 24, seed: int = 0) -> Problem:
    """Two layers: L0H0 previous-token head (copies the token into `prev`), L1H0 induction head (its key
    reads `prev` from L0H0: K-composition; it copies the attended token to the logits). Distractors: L0H1
    copies the current token into `scratch`, L1H1 moves `scratch` into `scratch2`; nothing reads them.
    Task: BOS + A + A; the metric is the logit difference clean target - corrupted token over the second
    copy; corrupted = BOS + distinct fresh tokens (no repeat, so the induction head's pattern changes too)."""
    n_ctx = 2 * chunk + 1
    spaces = {"prev": d_vocab, "out": d_vocab, "scratch": d_vocab, "scratch2": d_vocab}
    b = Builder(d_vocab, n_ctx, n_layers=2, n_heads=2, spaces=spaces, d_head=max(d_vocab, n_ctx))
    b.attend_previous(0, 0, STRENGTH)
    b.copy(0, 0, "tok", "prev")
    b.attend_same(0, 1, "tok", "tok", STRENGTH)
    b.copy(0, 1, "tok", "scratch")
    b.attend_same(1, 0, "tok", "prev", STRENGTH)
    b.copy(1, 0, "tok", "out")
    b.attend_previous(1, 1, STRENGTH)
    b.copy(1, 1, "scratch", "scratch2")
    b.read_out("out")
    gen = torch.Generator().manual_seed(seed)
    first = _distinct(batch, chunk, 1, d_vocab, gen)
    clean = torch.cat([torch.zeros(batch, 1, dtype=torch.long), first, first], dim=1)
    corrupted = unrepeated_tokens(clean, d_vocab, seed + 1)
    mask = torch.zeros_like(clean, dtype=torch.bool)
    mask[:, chunk + 1 : 2 * chunk] = True  # second copy, each position predicting the next repeated token
    nxt = lambda t: torch.cat([t[:, 1:], t[:, :1]], dim=1)  # noqa: E731  (target at each position)
    return Problem(
        "induction",
        b.build(),
        clean,
        corrupted,
        TargetLogitDiff(nxt(clean), nxt(corrupted), mask),
        ["input->a0.h0<v>", "a0.h0->a1.h0<k>", "input->a1.h0<q>", "input->a1.h0<v>", "a1.h0->logits"],
        "previous-token head -> K input of the induction head -> logits (K-composition)",
        ["a0.h1", "a1.h1"],
    )


YES, NO = 1, 2


def duplicate_token(batch: int = 32, length: int = 10, d_vocab: int = 32, seed: int = 0) -> Problem:
    """L0H0 is a duplicate-token detector: each query attends to an earlier copy of its own token (never
    itself), else to BOS, and writes the `nonbos` flag of what it found into `dup`; the logit of YES
    (token 1) reads `dup`, NO (token 2) reads a constant. Distractors: L0H1 previous-token copy into
    `scratch`; L1H0 reads the detector's `dup` (a real edge from L0H0) and moves it into `scratch2`.
    Task: BOS + distinct tokens whose last one repeats an earlier one; corrupted: half the rows
    change the last token, half the earlier copy, to a fresh token."""
    n_ctx = length + 1
    spaces = {"dup": 1, "scratch": d_vocab, "scratch2": 1}
    b = Builder(d_vocab, n_ctx, n_layers=2, n_heads=2, spaces=spaces, d_head=d_vocab + n_ctx + 1, flags={"nonbos": 1})
    b.set_flag("nonbos", list(range(1, d_vocab)))
    b.attend_same(0, 0, "tok", "tok", STRENGTH, exclude_self=True)
    b.sink(0, 0, STRENGTH / 2, slot=d_vocab + n_ctx)
    b.copy(0, 0, "nonbos", "dup")
    b.attend_previous(0, 1, STRENGTH)
    b.copy(0, 1, "tok", "scratch")
    b.attend_same(1, 0, "tok", "tok", STRENGTH)  # attends to itself
    b.copy(1, 0, "dup", "scratch2")
    b.read_out("dup", STRENGTH, tokens=[YES])
    b.read_out("one", STRENGTH / 2, tokens=[NO])
    gen = torch.Generator().manual_seed(seed)
    body = _distinct(batch, length, 3, d_vocab, gen)  # [batch, length]: last one unused yet
    rows = torch.arange(batch)
    earlier = torch.randint(0, length - 1, (batch,), generator=gen)
    clean = body.clone()
    clean[:, -1] = body[rows, earlier]
    corrupted = clean.clone()
    fresh = body[:, -1]  # a token not elsewhere in the row
    change_last = rows % 2 == 0
    corrupted[rows[change_last], -1] = fresh[change_last]
    corrupted[rows[~change_last], earlier[~change_last]] = fresh[~change_last]
    bos = torch.zeros(batch, 1, dtype=torch.long)
    clean, corrupted = torch.cat([bos, clean], 1), torch.cat([bos, corrupted], 1)
    mask = torch.zeros_like(clean, dtype=torch.bool)
    mask[:, -1] = True
    return Problem(
        "duplicate-token",
        b.build(),
        clean,
        corrupted,
        TargetLogitDiff(torch.full_like(clean, YES), torch.full_like(clean, NO), mask),
        ["input->a0.h0<q>", "input->a0.h0<k>", "a0.h0->logits"],
        "duplicate-token head (query and key read the tokens) -> logits",
        ["a0.h1", "a1.h0"],
    )


def copy_position(batch: int = 16, length: int = 10, d_vocab: int = 24, seed: int = 0) -> Problem:
    """With MLPs: m0 copies the token into `mtok` (through ReLUs); L1H0 always attends to position 1 and
    copies its `mtok` to the logits. Distractors: L0H0 previous-token copy into `scratch`, L1H1 copies the
    token at position 2 into `scratch2`, m1 copies `scratch` into `scratch3`. Task: predict the token at
    position 1 at the last position; corrupted: that token replaced by one not in the row."""
    n_ctx = length + 1
    spaces = {"mtok": d_vocab, "out": d_vocab, "scratch": d_vocab, "scratch2": d_vocab, "scratch3": d_vocab}
    b = Builder(
        d_vocab, n_ctx, n_layers=2, n_heads=2, spaces=spaces, d_head=max(d_vocab, n_ctx), mlp=True, d_mlp=d_vocab
    )
    b.mlp_copy(0, "tok", "mtok")
    b.attend_position(1, 0, 1, STRENGTH)
    b.copy(1, 0, "mtok", "out")
    b.attend_previous(0, 0, STRENGTH)
    b.copy(0, 0, "tok", "scratch")
    b.attend_position(1, 1, 2, STRENGTH)
    b.copy(1, 1, "tok", "scratch2")
    b.mlp_copy(1, "scratch", "scratch3")
    b.read_out("out")
    gen = torch.Generator().manual_seed(seed)
    body = _distinct(batch, length + 1, 1, d_vocab, gen)  # the extra last column: a fresh token per row
    clean = torch.cat([torch.zeros(batch, 1, dtype=torch.long), body[:, :length]], dim=1)
    corrupted = clean.clone()
    corrupted[:, 1] = body[:, length]
    mask = torch.zeros_like(clean, dtype=torch.bool)
    mask[:, -1] = True
    answers = clean[:, 1:2].expand_as(clean)
    distractors = corrupted[:, 1:2].expand_as(clean)
    return Problem(
        "copy-position",
        b.build(),
        clean,
        corrupted,
        TargetLogitDiff(answers, distractors, mask),
        ["input->m0", "m0->a1.h0<v>", "a1.h0->logits"],
        "MLP 0 (token copy) -> V input of the fixed-position head -> logits",
        ["a0.h0", "a1.h1", "m1"],
    )


def gated_mlp(batch: int = 16, length: int = 4, seed: int = 0) -> Problem:
    """Built to separate first-order from integrated attribution. m0 has a gate neuron relu(2 trig - 1): off
    on the clean token at position 1 (gradient exactly 0), on for the corrupted one; L1H0 attends to position 1
    and moves the gate's output (`fired`) to the YES logit. m1 is a distractor that writes |sign| of the last
    token (relu(s) + relu(-s)) to the YES logit: the corruption flips the sign (+1 -> -1), so |sign| and the
    logits never change, yet the clean gradient says the edge input -> m1 matters. EAP ranks the true edge
    input -> m0 at zero and the false input -> m1 on top; the integral along the path gets both right.
    Tokens: A = 3..5 (sign +1), B = 6..8 (sign -1), triggers 9..11, neutral 12..15."""
    d_vocab, a, b_, trig, neutral = 16, [3, 4, 5], [6, 7, 8], [9, 10, 11], [12, 13, 14, 15]
    flags = {"trig": 1, "sign": 1}
    spaces = {"fired": 1, "out": 1, "mag": 1, "scratch": d_vocab}
    b = Builder(d_vocab, length, n_layers=2, n_heads=1, spaces=spaces, d_head=max(d_vocab, length), mlp=True,
                d_mlp=2, flags=flags)  # fmt: skip
    b.set_flag("trig", trig)
    b.set_flag("sign", a, 1.0)
    b.set_flag("sign", b_, -1.0)
    b.neuron(0, 0, read={"trig": 2.0}, write={"fired": 1.0}, bias=-1.0)
    b.attend_previous(0, 0, STRENGTH)
    b.copy(0, 0, "tok", "scratch")
    b.attend_position(1, 0, 1, STRENGTH)
    b.copy(1, 0, "fired", "out")
    b.neuron(1, 0, read={"sign": 1.0}, write={"mag": 1.0})
    b.neuron(1, 1, read={"sign": -1.0}, write={"mag": 1.0})
    b.read_out("out", STRENGTH, tokens=[YES])
    b.read_out("mag", STRENGTH, tokens=[YES])
    gen = torch.Generator().manual_seed(seed)

    def pick(options: list[int], n: int) -> torch.Tensor:
        return torch.tensor(options)[torch.randint(0, len(options), (n,), generator=gen)]

    clean = torch.zeros(batch, length, dtype=torch.long)
    clean[:, 1], clean[:, 2:-1], clean[:, -1] = pick(neutral, batch), neutral[0], pick(a, batch)
    corrupted = clean.clone()
    corrupted[:, 1], corrupted[:, -1] = pick(trig, batch), pick(b_, batch)
    mask = torch.zeros_like(clean, dtype=torch.bool)
    mask[:, -1] = True
    return Problem(
        "gated-mlp",
        b.build(),
        clean,
        corrupted,
        TargetLogitDiff(torch.full_like(clean, NO), torch.full_like(clean, YES), mask),
        ["input->m0", "m0->a1.h0<v>", "a1.h0->logits"],
        "gate neuron in MLP 0 (zero gradient on the clean run) -> V input of the position-1 head -> logits",
        ["a0.h0"],  # m1 reads a changing input but writes the same |sign| in both runs
    )


KNOWN = {
    "induction": induction,
    "duplicate-token": duplicate_token,
    "copy-position": copy_position,
    "gated-mlp": gated_mlp,
}


def known_circuits(**kwargs) -> list[Problem]:
    """Every constructed model with its task and true circuit."""
    return [make(**kwargs) for make in KNOWN.values()]
