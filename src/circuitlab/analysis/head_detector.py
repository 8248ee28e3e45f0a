"""TransformerLens's `detect_head`: how well each head's attention on one sequence matches a pattern.

TL's score, per head, for a [query, key] detection pattern D and the head's pattern A on `seq`:

- "mul": sum(A * D) / sum(A): the share of all attention that lands where D is 1. Every query row of
  A sums to 1, so the denominator is the number of query positions n, BOS and the first query
  included, and a perfect previous-token head scores (n - 1) / n; `exclude_bos` / `exclude_current_token`
  zero A's key-0 column / diagonal first (they then leave the denominator too).
- "abs": 1 - round(sum|A - D| / n, 3), 1 for a perfect match, -1 for a perfect mismatch.

Our `head_scores` (circuitlab.analysis.heads) measure the same roles differently on purpose: the mean
attention to the target key over only the queries that *have* one (so a perfect head scores 1), on
batches of random probe sequences, each with a null baseline (a uniform causal head, or the same head
on sequences with nothing repeated) to beat. `detect_head` keeps TL's numbers for TL code.

Unlike TL 2.18, a list of strings passes `heads`, `exclude_bos`, `exclude_current_token` and
`error_measure` on to every sequence (TL's recursion drops them: its documented behaviour, not its
bug), the cache's patterns are never modified in place, and a tensor of token ids works for models
without a tokenizer.
"""

from __future__ import annotations

import logging
from typing import Literal, get_args

import torch

from ..model import ActivationCache, HookedTransformer
from ..model.errors import ShapeError, TLCheckError

HeadName = Literal["previous_token_head", "duplicate_token_head", "induction_head"]
HEAD_NAMES: list[str] = list(get_args(HeadName))
ErrorMeasure = Literal["abs", "mul"]
LayerHeadTuple = tuple[int, int]
LayerToHead = dict[int, list[int]]


# ---- TL's built-in detection patterns, [pos, pos] for tokens [1, pos] or [pos] ----------------------
def get_previous_token_head_detection_pattern(tokens: torch.Tensor) -> torch.Tensor:
    """1 where query q attends to key q - 1."""
    n = tokens.shape[-1]
    return torch.diag(torch.ones(n - 1), -1)


def get_duplicate_token_head_detection_pattern(tokens: torch.Tensor) -> torch.Tensor:
    """1 where key k < q holds the same token as query q."""
    t = tokens.reshape(-1).cpu()
    same = (t[:, None] == t[None, :]).float()  # [query, key]
    return torch.tril(same, diagonal=-1)


def get_induction_head_detection_pattern(tokens: torch.Tensor) -> torch.Tensor:
    """1 where key k - 1 (k <= q) holds the same token as query q: the token after an earlier copy."""
    duplicate = get_duplicate_token_head_detection_pattern(tokens)
    shifted = torch.zeros_like(duplicate)
    shifted[:, 1:] = duplicate[:, :-1]
    return torch.tril(shifted)


_PATTERNS = {
    "previous_token_head": get_previous_token_head_detection_pattern,
    "duplicate_token_head": get_duplicate_token_head_detection_pattern,
    "induction_head": get_induction_head_detection_pattern,
}


def get_supported_heads() -> None:
    print(f"Supported heads: {HEAD_NAMES}")


# ---- scores -----------------------------------------------------------------------------------------
def _scores(
    patterns: torch.Tensor, detection: torch.Tensor, exclude_bos: bool, exclude_current_token: bool, error_measure: str
) -> torch.Tensor:
    """TL's score for patterns [..., query, key] against detection [query, key]: [...]."""
    n = patterns.shape[-1]
    keep = torch.ones(n, n, dtype=patterns.dtype, device=patterns.device)
    if exclude_bos:
        keep[:, 0] = 0
    if exclude_current_token:
        keep.fill_diagonal_(0)
    detection = detection.to(patterns.device, patterns.dtype)
    if error_measure == "mul":
        attention = patterns * keep
        return (attention * detection).sum((-2, -1)) / attention.sum((-2, -1))
    abs_diff = (patterns - detection).abs() * keep
    return 1 - torch.round(abs_diff.sum((-2, -1)) / n, decimals=3)


def compute_head_attention_similarity_score(
    attention_pattern: torch.Tensor,
    detection_pattern: torch.Tensor,
    *,
    exclude_bos: bool = False,
    exclude_current_token: bool = False,
    error_measure: ErrorMeasure = "mul",
) -> float:
    """TL's score of one head's [query, key] pattern (see the module docstring); the input is not modified."""
    if attention_pattern.ndim != 2 or attention_pattern.shape[0] != attention_pattern.shape[1]:
        raise ShapeError(f"Attention pattern is not square; got shape {tuple(attention_pattern.shape)}")
    return _scores(attention_pattern, detection_pattern, exclude_bos, exclude_current_token, error_measure).item()


def _tokens(model: HookedTransformer, seq: str | torch.Tensor) -> torch.Tensor:
    if isinstance(seq, torch.Tensor):
        return seq.reshape(1, -1).to(model.device)
    if model.tokenizer is None:
        raise ValueError("detect_head on text needs a tokenizer; pass token ids (a tensor) to a model without one")
    return model.to_tokens(seq)


def _layer_to_heads(heads: list[LayerHeadTuple] | LayerToHead | None, n_layers: int, n_heads: int) -> LayerToHead:
    if heads is None:
        return {layer: list(range(n_heads)) for layer in range(n_layers)}
    if isinstance(heads, dict):
        return heads
    out: LayerToHead = {}
    for layer, head in heads:
        out.setdefault(layer, []).append(head)
    return out


@torch.no_grad()
def detect_head(
    model: HookedTransformer,
    seq: str | list[str] | torch.Tensor,
    detection_pattern: torch.Tensor | HeadName,
    heads: list[LayerHeadTuple] | LayerToHead | None = None,
    cache: ActivationCache | None = None,
    *,
    exclude_bos: bool = False,
    exclude_current_token: bool = False,
    error_measure: ErrorMeasure = "mul",
) -> torch.Tensor:
    """Score every head (or only `heads`; the rest are -1) against `detection_pattern` on `seq`: [layer, head].

    `detection_pattern`: a lower-triangular [pos, pos] tensor or one of `HEAD_NAMES`. `seq`: a string,
    a list of strings (scores averaged over them), or token ids [pos] / [batch, pos] (rows averaged).
    `cache`: the cached run of `seq`, to reuse. See the module docstring for the two error measures
    and how they relate to `head_scores`.
    """
    if error_measure not in get_args(ErrorMeasure):
        raise TLCheckError(f"Invalid error_measure={error_measure!r}; valid values are {get_args(ErrorMeasure)}")
    if isinstance(detection_pattern, str) and detection_pattern not in HEAD_NAMES:
        raise TLCheckError(
            f"detection_pattern must be a Tensor or one of head names: {HEAD_NAMES}; got {detection_pattern}"
        )
    kwargs = dict(exclude_bos=exclude_bos, exclude_current_token=exclude_current_token, error_measure=error_measure)
    several = isinstance(seq, list) or (isinstance(seq, torch.Tensor) and seq.ndim == 2 and seq.shape[0] > 1)
    if several:
        if cache is not None:
            raise ValueError("cache= goes with a single sequence; pass one sequence or no cache")
        return torch.stack([detect_head(model, s, detection_pattern, heads, **kwargs) for s in seq]).mean(0)

    cfg = model.cfg
    tokens = _tokens(model, seq)
    seq_len = tokens.shape[-1]
    if isinstance(detection_pattern, str):
        detection_pattern = _PATTERNS[detection_pattern](tokens)
    if error_measure == "mul" and not set(detection_pattern.unique().tolist()) <= {0, 1}:
        logging.warning("Using detection pattern with values other than 0 or 1 with error_measure 'mul'")
    if not 1 < seq_len < cfg.n_ctx:
        raise ShapeError(
            f"The sequence must be non-empty and must fit within the model's context window: got {seq_len} "
            f"tokens, n_ctx={cfg.n_ctx}"
        )
    square = detection_pattern.ndim == 2 and detection_pattern.shape[0] == detection_pattern.shape[1]
    if not (square and detection_pattern.equal(detection_pattern.tril()) and detection_pattern.shape[0] == seq_len):
        raise ShapeError(
            "The detection pattern must be a lower triangular matrix of shape (sequence_length, sequence_length); "
            f"sequence_length={seq_len}; got detection pattern of shape {tuple(detection_pattern.shape)}"
        )
    if cache is None:
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_pattern"))
    patterns = torch.stack([cache["pattern", layer] for layer in range(cfg.n_layers)])  # [layer, (1,) head, q, k]
    if cache.has_batch_dim:
        patterns = patterns[:, 0]
    if patterns.dtype not in (torch.float32, torch.float64):
        patterns = patterns.float()
    scores = _scores(patterns, detection_pattern, exclude_bos, exclude_current_token, error_measure)
    matches = -torch.ones(cfg.n_layers, cfg.n_heads, dtype=cfg.dtype)
    for layer, layer_heads in _layer_to_heads(heads, cfg.n_layers, cfg.n_heads).items():
        matches[layer, layer_heads] = scores[layer, layer_heads].to(matches.dtype).cpu()
    return matches
