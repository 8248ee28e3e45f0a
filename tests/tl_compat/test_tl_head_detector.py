"""TransformerLens-style head detection (`detect_head`), written as TL code is, checked against
circuitlab's native attention scores on the same weights (a hand-built previous-token + induction model)."""

from __future__ import annotations

import pytest
import torch

from circuitlab import HookedTransformer
from circuitlab.analysis.heads import attention_to
from circuitlab.head_detector import (
    HEAD_NAMES,
    compute_head_attention_similarity_score,
    detect_head,
    get_duplicate_token_head_detection_pattern,
    get_induction_head_detection_pattern,
    get_previous_token_head_detection_pattern,
)

from ..test_heads import hand_built_induction_model
from ._tiny import tiny_gpt2_folder

HALF = 10


@pytest.fixture(scope="module")
def built() -> HookedTransformer:
    return hand_built_induction_model()


@pytest.fixture(scope="module")
def seq() -> torch.Tensor:
    x = torch.randperm(31, generator=torch.Generator().manual_seed(0))[:HALF] + 1
    return torch.cat([torch.zeros(1, dtype=torch.long), x, x])  # [BOS, x, x]: 21 tokens


def test_head_detection(built: HookedTransformer, seq: torch.Tensor) -> None:
    # ---- TL-style program ------------------------------------------------------------------------
    assert HEAD_NAMES == ["previous_token_head", "duplicate_token_head", "induction_head"]
    prev_scores = detect_head(built, seq, "previous_token_head")
    induction_scores = detect_head(built, seq, "induction_head")
    abs_scores = detect_head(built, seq, "induction_head", error_measure="abs")
    no_bos = detect_head(built, seq, "previous_token_head", exclude_bos=True, exclude_current_token=True)
    only = detect_head(built, seq, "induction_head", heads=[(1, 0)])
    custom = torch.tril(torch.ones(len(seq), len(seq)))  # "attends anywhere": every head scores 1
    _, cache = built.run_with_cache(seq, remove_batch_dim=True)
    everywhere = detect_head(built, seq, custom, cache=cache, exclude_bos=True)

    # ---- circuitlab's native scores on the same run ----------------------------------------------
    n = len(seq)
    patterns = torch.stack([cache["pattern", layer] for layer in range(2)])[:, None]  # [layer, 1, head, q, k]
    pos = torch.arange(n)[None]
    previous = attention_to(patterns, pos - 1)  # over the queries that have a previous token
    torch.testing.assert_close(prev_scores, previous * (n - 1) / n)  # TL divides by all n queries
    in_repeat = pos > HALF
    induction_key = torch.where(in_repeat, pos - HALF + 1, -1)
    torch.testing.assert_close(induction_scores, attention_to(patterns, induction_key) * in_repeat.sum() / n)
    assert prev_scores[0, 0] > 0.9 and induction_scores[1, 0] > 0.4  # the two built heads
    D_ind = get_induction_head_detection_pattern(seq)
    expected_abs = 1 - torch.round((patterns[:, 0] - D_ind).abs().sum((-2, -1)) / n, decimals=3)
    torch.testing.assert_close(abs_scores, expected_abs)
    assert abs_scores[1, 0] == abs_scores.max()
    A = patterns[:, 0].clone()
    A[..., 0] = 0
    A.diagonal(dim1=-2, dim2=-1).zero_()
    D = get_previous_token_head_detection_pattern(seq)
    torch.testing.assert_close(no_bos, ((A * D).sum((-2, -1)) / A.sum((-2, -1))))
    assert (only[1, 0] == induction_scores[1, 0]) and (only.flatten()[:2] == -1).all() and only[1, 1] == -1
    torch.testing.assert_close(everywhere, torch.ones(2, 2, dtype=torch.float64))
    assert cache["pattern", 0][:, :, 0].abs().sum() > 0  # detect_head left the cache alone (TL zeroes it)
    per_head = compute_head_attention_similarity_score(cache["pattern", 1][0], D_ind)  # "mul", nothing excluded
    assert per_head == pytest.approx(induction_scores[1, 0].item())


def test_builtin_patterns_and_bad_input(built: HookedTransformer) -> None:
    t = torch.tensor([[5, 7, 5, 9, 7]])
    prev = get_previous_token_head_detection_pattern(t)
    assert prev[1, 0] == 1 and prev[4, 3] == 1 and prev.sum() == 4
    dup = get_duplicate_token_head_detection_pattern(t)
    assert dup[2, 0] == 1 and dup[4, 1] == 1 and dup.sum() == 2
    ind = get_induction_head_detection_pattern(t)
    assert ind[2, 1] == 1 and ind[4, 2] == 1 and ind.sum() == 2
    seq = torch.arange(8)
    with pytest.raises(AssertionError, match="error_measure"):
        detect_head(built, seq, "previous_token_head", error_measure="l2")
    with pytest.raises(AssertionError, match="head names"):
        detect_head(built, seq, "copying_head")
    with pytest.raises(ValueError, match="lower triangular"):
        detect_head(built, seq, torch.ones(8, 8))
    with pytest.raises(ValueError, match="context window"):
        detect_head(built, torch.arange(24) % 32, "previous_token_head")


def test_list_of_strings_keeps_its_keywords(tmp_path_factory) -> None:
    """TL 2.18 drops exclude_bos etc. for a list of strings; its documentation says they apply."""
    model = HookedTransformer.from_pretrained(tiny_gpt2_folder(tmp_path_factory.mktemp("tiny")))
    texts = ["The cat sat on the mat.", "John gave a drink to Mary and John."]
    kwargs = dict(exclude_bos=True, error_measure="abs")
    averaged = detect_head(model, texts, "duplicate_token_head", **kwargs)
    each = torch.stack([detect_head(model, t, "duplicate_token_head", **kwargs) for t in texts]).mean(0)
    torch.testing.assert_close(averaged, each)
    assert not torch.allclose(averaged, detect_head(model, texts, "duplicate_token_head"))
