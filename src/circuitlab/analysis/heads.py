"""Head-role scores for every (layer, head) at once, each with a null baseline.

Attention scores are read from the patterns on probe sequences of random tokens:

- previous-token, current-token, first-token: mean attention to key q-1, q, 0 (all queries that have
  one); baseline: a uniform causal head on the same sequences.
- duplicate-token and prefix-matching on [BOS, x, x] (x random): attention from the repeat to the
  earlier copy of the same token, and to the token after it; baseline: the same head on
  [BOS, x, y] with fresh y, reading the same key positions.
- induction: prefix matching on sequences whose repeated chunk starts at a *random* offset, so a
  head attending at a fixed distance cannot score; baseline as above.
- copying (from the weights): the full OV circuit W_E W_V W_O W_U, as the fraction of the magnitude of
  its eigenvalues with positive real part, and its diagonal top-1 accuracy (does attending to token
  t raise logit t most?); baseline: random heads with the same shapes and norms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from ..model import FactoredMatrix, HookedTransformer
from ..table import Table, TableView

ATTENTION_SCORES = ("previous_token", "current_token", "first_token", "duplicate_token", "prefix_matching", "induction")
COPY_SCORES = ("copying_eigen", "copying_top1")
ALL_SCORES = ATTENTION_SCORES + COPY_SCORES
Bos = int | None | Literal["model"]  # a BOS id, None for no BOS, or "model": the model's own (see model_bos_id)


def model_bos_id(model: Any, default: int | None = 0) -> int | None:
    """The model's BOS token id: its tokenizer's, else the one its pretrained config named
    (`cfg.extra["bos_token_id"]`, e.g. 1 for Llama-family models), else `default`."""
    tokenizer = getattr(model, "tokenizer", None)
    bos = getattr(tokenizer, "bos_token_id", None) if tokenizer is not None else None
    if bos is None:
        bos = model.cfg.extra.get("bos_token_id")
    return default if bos is None else int(bos)


def _resolve_bos(model: Any, bos: Bos) -> int | None:
    return model_bos_id(model) if bos == "model" else bos


@dataclass
class HeadScores(TableView):
    """`scores[name]` and `baselines[name]`, each [layer, head]."""

    scores: dict[str, torch.Tensor]
    baselines: dict[str, torch.Tensor]

    def describe(self, name: str, layer: int, head: int) -> str:
        return f"{self.scores[name][layer, head]:.2f} vs {self.baselines[name][layer, head]:.2f} baseline"

    def table(self) -> Table:
        """One row per head, each score beside its baseline."""
        names = list(self.scores)
        n_layers, n_heads = next(iter(self.scores.values())).shape
        rows = [
            {"head": f"L{l}H{h}"}
            | {
                col: float(src[n][l, h])
                for n in names
                for col, src in ((n, self.scores), (f"{n} baseline", self.baselines))
                if n in src
            }
            for l in range(n_layers)
            for h in range(n_heads)
        ]
        return Table(rows, title="head scores (each beside its null baseline)")

    def summary(self) -> str:
        """The head with the highest margin over its baseline, per score."""
        best = []
        for n, s in self.scores.items():
            margin = s - self.baselines.get(n, torch.zeros_like(s))
            l, h = divmod(int(margin.argmax()), s.shape[1])
            best.append(f"{n} L{l}H{h} {self.describe(n, l, h)}" if n in self.baselines else f"{n} L{l}H{h}")
        shape = tuple(next(iter(self.scores.values())).shape)
        return f"HeadScores [layer, head] = {list(shape)}; best per score: " + "; ".join(best)

    def __repr__(self) -> str:  # the table has a row per head: the best head of each score fits a screen better
        return self.summary().replace("; ", "\n  ").replace(": ", ":\n  ", 1)


# ---- probe sequences ---------------------------------------------------------------------------
@dataclass
class Probes:
    """Token batches for the attention scores, with the key each query should attend to."""

    random: torch.Tensor  # [batch, pos] random tokens after BOS
    repeat: torch.Tensor  # [BOS, x, x]
    repeat_control: torch.Tensor  # [BOS, x, y]: same positions, nothing repeated
    half: int  # length of x
    shifted: torch.Tensor  # random tokens with one chunk repeated at a random offset
    shifted_control: torch.Tensor
    shifted_earlier: torch.Tensor  # [batch, pos]: position of the earlier copy, or -1


def make_probes(
    d_vocab: int,
    n_ctx: int,
    batch: int = 32,
    length: int | None = None,
    bos: int | None = 0,
    seed: int = 0,
    token_range: tuple[int, int] | None = None,
) -> Probes:
    """Probe batches of BOS (unless `bos` is None) then random tokens from `token_range` = [low, high)
    (default: the whole vocabulary), never the BOS id itself; a range lets byte-fallback or special
    tokens be left out."""
    gen = torch.Generator().manual_seed(seed)
    length = min(length or n_ctx, n_ctx)
    low, high = token_range if token_range is not None else (0, d_vocab)
    if not 0 <= low < high <= d_vocab:
        raise ValueError(f"token_range=({low}, {high}) is invalid: expected 0 <= low < high <= d_vocab={d_vocab}")
    if bos is not None and not 0 <= bos < d_vocab:
        raise ValueError(f"bos={bos} is outside the vocabulary (d_vocab={d_vocab}); use None for no BOS")
    candidates = torch.arange(low, high)
    candidates = candidates[candidates != bos] if bos is not None else candidates  # [n_candidates]
    if len(candidates) < 2:
        raise ValueError(f"token_range=({low}, {high}) leaves {len(candidates)} token(s) besides BOS: need 2 or more")
    n_cand = len(candidates)
    start = [] if bos is None else [torch.full((batch, 1), bos)]
    n_body = length - len(start)
    if n_body < 6:
        raise ValueError(
            f"head-score probes need at least 6 tokens after BOS (a chunk and its repeat), but the context "
            f"holds {n_body} (n_ctx={n_ctx}, length={length}); head roles such as induction are undefined for "
            "such short contexts"
        )
    half = n_body // 2

    def draw(n: int) -> torch.Tensor:  # distinct within a row when the vocabulary allows it
        if n_cand >= n:
            return candidates[torch.rand(batch, n_cand, generator=gen).argsort(1)[:, :n]]
        return candidates[torch.randint(0, n_cand, (batch, n), generator=gen)]

    body = draw(2 * half)
    x, y = body[:, :half], body[:, half:]
    random = torch.cat([*start, draw(n_body)], dim=1)
    repeat = torch.cat([*start, x, x], dim=1)
    repeat_control = torch.cat([*start, x, y], dim=1)

    # A chunk of random length c repeated after a random gap: the distance between copies varies.
    fresh = torch.cat([*start, draw(n_body)], dim=1)
    pos = torch.arange(length)[None, :]
    first = len(start)
    chunk = torch.randint(max(2, n_body // 6), max(3, n_body // 3) + 1, (batch, 1), generator=gen)
    s1 = first + (torch.rand(batch, 1, generator=gen) * (n_body - 2 * chunk + 1)).long()
    s2 = s1 + chunk + (torch.rand(batch, 1, generator=gen) * (length - s1 - 2 * chunk + 1)).long()
    in_repeat = (pos >= s2) & (pos < s2 + chunk)
    shifted = fresh.gather(1, torch.where(in_repeat, pos - (s2 - s1), pos))
    earlier = torch.where(in_repeat, pos - (s2 - s1), torch.full_like(pos, -1))
    return Probes(random, repeat, repeat_control, half, shifted, fresh, earlier)


# ---- attention scores --------------------------------------------------------------------------
def _patterns(model: HookedTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """All attention patterns, stacked: [layer, batch, head, query, key]."""
    _, cache = model.run_with_cache(tokens.to(model.device), names_filter=lambda n: n.endswith("hook_pattern"))
    return torch.stack([cache["pattern", l] for l in range(model.cfg.n_layers)]).float().cpu()


def attention_to(pattern: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Mean attention from each query to key[batch, query] (ignoring key < 0): [layer, head].

    pattern: [layer, batch, head, query, key].
    """
    valid = key >= 0  # [batch, query]
    index = key.clamp(min=0)[None, :, None, :, None].expand(*pattern.shape[:-1], 1)
    picked = pattern.gather(-1, index).squeeze(-1)  # [layer, batch, head, query]
    weights = valid[None, :, None, :].to(picked.dtype)
    return (picked * weights).sum((1, 3)) / weights.sum((1, 3)).clamp(min=1)


def _uniform_pattern(n_pos: int, causal: bool) -> torch.Tensor:
    """[1, 1, 1, query, key] uniform attention over the visible keys."""
    visible = torch.ones(n_pos, n_pos).tril() if causal else torch.ones(n_pos, n_pos)
    return (visible / visible.sum(-1, keepdim=True))[None, None, None]


def attention_scores(model: HookedTransformer, probes: Probes) -> HeadScores:
    """The six attention scores and their baselines, [layer, head] each."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    batch, n_pos = probes.random.shape
    pos = torch.arange(n_pos)[None, :].expand(batch, -1)
    offsets = {
        "previous_token": pos - 1,
        "current_token": pos,
        "first_token": torch.where(pos > 0, 0, -1),  # position 0 attends to itself by necessity
    }
    uniform = _uniform_pattern(n_pos, model.cfg.causal)
    scores, baselines = {}, {}
    random_patterns = _patterns(model, probes.random)
    for name, key in offsets.items():
        scores[name] = attention_to(random_patterns, key)
        baselines[name] = attention_to(uniform, key[:1]).expand(n_layers, n_heads)

    first_copy = probes.repeat.shape[1] - 2 * probes.half  # index of x's first token
    rep_pos = torch.arange(probes.repeat.shape[1])[None, :].expand(probes.repeat.shape[0], -1)
    in_second = rep_pos >= first_copy + probes.half
    duplicate = torch.where(in_second, rep_pos - probes.half, -1)
    prefix = torch.where(in_second & (rep_pos - probes.half + 1 < rep_pos), rep_pos - probes.half + 1, -1)
    repeat, control = _patterns(model, probes.repeat), _patterns(model, probes.repeat_control)
    for name, key in (("duplicate_token", duplicate), ("prefix_matching", prefix)):
        scores[name], baselines[name] = attention_to(repeat, key), attention_to(control, key)

    earlier = probes.shifted_earlier
    induction_key = torch.where((earlier >= 0) & (earlier + 1 < pos), earlier + 1, -1)
    scores["induction"] = attention_to(_patterns(model, probes.shifted), induction_key)
    baselines["induction"] = attention_to(_patterns(model, probes.shifted_control), induction_key)
    return HeadScores(scores, baselines)


# ---- copying from the weights ------------------------------------------------------------------
def copying_scores(
    W_E: torch.Tensor, W_V: torch.Tensor, W_O: torch.Tensor, W_U: torch.Tensor, max_tokens: int = 4096
) -> dict[str, torch.Tensor]:
    """Copying of the full OV circuit per head: {"copying_eigen", "copying_top1"}, [layer, head] each.

    W_V [layer, head, d_model, d_head], W_O [layer, head, d_head, d_model]. Eigen: share of
    |eigenvalue| mass with positive real part (1 = pure copying, ~0.5 = random, 0 = anti-copying).
    Top-1: fraction of source tokens t (the first `max_tokens`) whose largest output logit is t.
    """
    ov = FactoredMatrix(W_E @ W_V, W_O @ W_U)  # [layer, head, vocab, vocab]
    eig = ov.eigenvalues  # [layer, head, d_head]
    positive = (eig.abs() * (eig.real > 0)).sum(-1) / eig.abs().sum(-1).clamp(min=1e-30)
    n_tokens = min(max_tokens, W_E.shape[0], W_U.shape[1])
    hits = torch.zeros(ov.shape[:2])
    for start in range(0, n_tokens, 256):  # rows in chunks: never the whole vocab x vocab matrix
        rows = torch.arange(start, min(start + 256, n_tokens))
        logits = ov.A[..., rows, :] @ ov.B  # [layer, head, chunk, vocab]
        hits += (logits.argmax(-1) == rows).sum(-1).float()
    return {"copying_eigen": positive.float(), "copying_top1": hits / n_tokens}


def copying_baseline(model: HookedTransformer, n_samples: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """The copying scores of random heads with each real head's shapes and norms, averaged."""
    gen = torch.Generator().manual_seed(seed)
    W_V, W_O = model.W_V.detach(), model.W_O.detach()
    totals: dict[str, torch.Tensor] = {}
    for _ in range(n_samples):
        rand_V = torch.randn(W_V.shape, generator=gen, dtype=W_V.dtype).to(W_V.device)
        rand_O = torch.randn(W_O.shape, generator=gen, dtype=W_O.dtype).to(W_O.device)
        rand_V *= W_V.norm(dim=(-2, -1), keepdim=True) / rand_V.norm(dim=(-2, -1), keepdim=True)
        rand_O *= W_O.norm(dim=(-2, -1), keepdim=True) / rand_O.norm(dim=(-2, -1), keepdim=True)
        for k, v in copying_scores(model.W_E.detach(), rand_V, rand_O, model.W_U.detach()).items():
            totals[k] = totals.get(k, 0) + v / n_samples
    return totals


# ---- everything ------------------------------------------------------------------------------
@torch.no_grad()
def head_scores(
    model: HookedTransformer,
    probes: Probes | None = None,
    batch: int = 32,
    seed: int = 0,
    bos: Bos = "model",
    token_range: tuple[int, int] | None = None,
    length: int | None = None,
) -> HeadScores:
    """All scores with baselines, [layer, head] each (see the module docstring).

    `bos`: the probes' first token; by default the model's BOS id (`model_bos_id`: tokenizer, then
    pretrained config, else 0); None for no BOS. `token_range`, `length` (default n_ctx): see `make_probes`.
    """
    bos = _resolve_bos(model, bos)
    probes = probes or make_probes(
        model.cfg.d_vocab, model.cfg.n_ctx, batch=batch, length=length, bos=bos, seed=seed, token_range=token_range
    )
    result = attention_scores(model, probes)
    copying = copying_scores(model.W_E, model.W_V, model.W_O, model.W_U)
    result.scores.update({k: v.cpu() for k, v in copying.items()})
    result.baselines.update({k: v.cpu() for k, v in copying_baseline(model, seed=seed).items()})
    return result


def register_head_scores(
    metrics: dict[str, Callable] | None = None,
    name: str = "heads",
    batch: int = 16,
    seed: int = 0,
    bos: Bos = "model",
    token_range: tuple[int, int] | None = None,
) -> dict[str, Callable]:
    """Add a metric that records every head score at each evaluation of `train(..., metrics=...)`.

    Values appear in metrics.jsonl as `heads.<score>.L<layer>H<head>`: role trajectories over training.
    """
    metrics = dict(metrics or {})
    probes: dict[str, Probes] = {}

    def record(model: HookedTransformer) -> dict[str, float]:
        if "p" not in probes:  # built once, on the model's vocabulary
            probes["p"] = make_probes(
                model.cfg.d_vocab,
                model.cfg.n_ctx,
                batch=batch,
                bos=_resolve_bos(model, bos),
                seed=seed,
                token_range=token_range,
            )
        scores = attention_scores(model, probes["p"]).scores
        scores.update(copying_scores(model.W_E, model.W_V, model.W_O, model.W_U))
        return {
            f"{score}.L{l}H{h}": round(float(value[l, h]), 5)
            for score, value in scores.items()
            for l in range(model.cfg.n_layers)
            for h in range(model.cfg.n_heads)
        }

    metrics[name] = record
    return metrics
