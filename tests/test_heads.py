"""Head scores, circuits and the census on hand-built heads whose roles are known exactly."""

from __future__ import annotations

import math

import pytest
import torch

from circuitlab import HookedTransformer, HookedTransformerConfig
from circuitlab.analysis import (
    all_composition_scores,
    composition_baseline,
    full_ov_circuit,
    full_qk_circuit,
    head_census,
    head_scores,
    positional_qk_circuit,
    positional_structure,
)

N_CTX, V = 24, 32  # positions, vocabulary (large enough for distinct probe tokens)
POS, TOK, PREV, OUT = 0, N_CTX, N_CTX + V, N_CTX + 2 * V  # subspaces of the residual stream
D_MODEL, D_HEAD, STRENGTH = N_CTX + 3 * V, V, 30.0


def hand_built_induction_model() -> HookedTransformer:
    """Layer 0 head 0: previous-token head writing the previous token into PREV. Layer 1 head 0:
    queries with the current token, keys with PREV (K-composition), copies the attended token into
    OUT, which the unembedding reads. Every other head is zero (attends uniformly, writes nothing)."""
    cfg = HookedTransformerConfig(
        n_layers=2, d_model=D_MODEL, n_heads=2, d_head=D_HEAD, n_ctx=N_CTX, d_vocab=V, attn_only=True,
        normalization_type=None, init_weights=False, dtype=torch.float64,
    )  # fmt: skip
    model = HookedTransformer(cfg)
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    eye_v, eye_p = torch.eye(V, dtype=torch.float64), torch.eye(N_CTX, dtype=torch.float64)
    with torch.no_grad():
        model.W_E.data[:, TOK : TOK + V] = eye_v
        model.W_pos.data[:, POS : POS + N_CTX] = eye_p
        a0, a1 = model.blocks[0].attn, model.blocks[1].attn
        a0.W_Q[0, POS : POS + N_CTX, :N_CTX] = STRENGTH * eye_p  # query at position i ...
        a0.W_K[0, POS : POS + N_CTX, :N_CTX] = STRENGTH * torch.roll(eye_p, 1, dims=1)  # ... matches key i - 1
        a0.W_V[0, TOK : TOK + V, :V] = eye_v
        a0.W_O[0, :V, PREV : PREV + V] = eye_v
        a1.W_Q[0, TOK : TOK + V, :V] = STRENGTH * eye_v  # current token ...
        a1.W_K[0, PREV : PREV + V, :V] = STRENGTH * eye_v  # ... matches a key whose previous token it is
        a1.W_V[0, TOK : TOK + V, :V] = eye_v
        a1.W_O[0, :V, OUT : OUT + V] = eye_v
        model.W_U.data[OUT : OUT + V, :] = 10 * eye_v
    return model


@pytest.fixture(scope="module")
def built() -> HookedTransformer:
    return hand_built_induction_model()


@pytest.fixture(scope="module")
def scores(built: HookedTransformer):
    return head_scores(built, batch=16, bos=None)


def test_previous_token_head_scores(scores) -> None:
    s, b = scores.scores, scores.baselines
    assert s["previous_token"][0, 0] > 0.95 and b["previous_token"][0, 0] < 0.2
    # The zero heads attend uniformly: they sit at the baseline on every attention score.
    for name in ("previous_token", "current_token", "first_token"):
        assert abs(s[name][0, 1] - b[name][0, 1]) < 0.02, name
    assert s["induction"][0, 0] < 0.1 and s["current_token"][0, 0] < 0.05


def test_induction_head_scores_and_copying(scores) -> None:
    s, b = scores.scores, scores.baselines
    assert s["induction"][1, 0] > 0.9 and b["induction"][1, 0] < 0.15
    assert s["prefix_matching"][1, 0] > 0.9 and b["prefix_matching"][1, 0] < 0.15
    assert s["induction"][1, 1] < 0.15  # the zero head in layer 1
    assert s["copying_eigen"][1, 0] == pytest.approx(1.0) and s["copying_top1"][1, 0] == pytest.approx(1.0)
    assert s["copying_top1"][1, 1] < 0.2 and 0.2 < b["copying_eigen"][1, 0] < 0.8


def test_composition_scores(built: HookedTransformer) -> None:
    comp = all_composition_scores(built)
    assert comp["K"].shape == (2, 2, 2, 2)
    k, q, v = comp["K"][0, 0, 1, 0], comp["Q"][0, 0, 1, 0], comp["V"][0, 0, 1, 0]
    assert k == pytest.approx(1 / math.sqrt(V), rel=1e-6)  # identity blocks: ||I|| / (||I|| ||I||)
    assert q == pytest.approx(0.0, abs=1e-9) and v == pytest.approx(0.0, abs=1e-9)
    assert k > 1.5 * composition_baseline(built, "K")
    assert (comp["K"][1] == 0).all() and (comp["K"][:, :, 0] == 0).all()  # only earlier -> later


def test_composition_matches_the_definition() -> None:
    torch.manual_seed(0)
    model = HookedTransformer(HookedTransformerConfig(n_layers=3, d_model=16, n_heads=2, n_ctx=8, d_vocab=10,
                                                      attn_only=True, dtype=torch.float64, seed=0))  # fmt: skip
    comp = all_composition_scores(model)
    OV, QK = model.OV.AB, model.QK.AB
    for l1, h1, l2, h2 in [(0, 1, 2, 0), (1, 0, 2, 1), (0, 0, 1, 1)]:
        left = OV[l1, h1]
        for kind, right in (("Q", QK[l2, h2]), ("K", QK[l2, h2].T), ("V", OV[l2, h2])):
            expected = torch.linalg.matrix_norm(left @ right) / (
                torch.linalg.matrix_norm(left) * torch.linalg.matrix_norm(right)
            )
            assert comp[kind][l1, h1, l2, h2] == pytest.approx(expected.item(), rel=1e-9), kind


def test_full_circuits_match_the_products(built: HookedTransformer) -> None:
    ov, qk, pos = full_ov_circuit(built), full_qk_circuit(built), positional_qk_circuit(built)
    assert ov.shape == (2, 2, V, V) and pos.shape == (2, 2, N_CTX, N_CTX)
    torch.testing.assert_close(ov[1, 0].AB, built.W_E @ built.OV[1, 0].AB @ built.W_U)
    torch.testing.assert_close(qk[1, 0].AB, built.W_E @ built.QK[1, 0].AB @ built.W_E.T)
    # The previous-token head's positional circuit peaks just below the diagonal.
    peaks = pos[0, 0].AB.argmax(-1)
    assert (peaks[1:] == torch.arange(N_CTX - 1)).all()


def test_positional_structure_counts_directions() -> None:
    model = HookedTransformer(HookedTransformerConfig(n_layers=1, d_model=16, n_heads=2, n_ctx=10, d_vocab=5,
                                                      dtype=torch.float64, seed=0))  # fmt: skip
    with torch.no_grad():  # positions coded along 2 directions; the last 4 positions left at 0
        model.W_pos.zero_()
        angle = torch.arange(6, dtype=torch.float64)
        model.W_pos[:6, 0], model.W_pos[:6, 1] = angle.cos(), angle.sin()
    found = positional_structure(model)
    assert found.dims_for_90 <= 2 and found.singular_values[2:].abs().max() < 1e-9
    assert found.position_norms[6:].std() < 1e-9 and found.position_norms[:6].std() > 0.01


def test_census_names_the_hand_built_heads(built: HookedTransformer) -> None:
    census = head_census(built, batch=16, bos=None)
    roles = {row.label: row.roles for row in census.rows}
    assert "previous-token" in roles["L0H0"] and "induction" in roles["L1H0"]
    assert roles["L0H1"] == [] and roles["L1H1"] == []
    row = census.heads_with("induction")[0]
    assert row.ablation_loss_increase > 1.0  # the repeated half becomes unpredictable
    assert census.rows[1].ablation_loss_increase == pytest.approx(0.0, abs=1e-9)  # a zero head
    assert "induction 0.9" in " ".join(row.evidence) and "baseline" in row.evidence[0]
    csv_text = census.to_csv()
    assert csv_text.splitlines()[0].startswith("head,roles,ablation_loss_increase")
    assert '"heads"' in census.to_json() and "L1H0" in str(census.table())


def test_probes_refuse_contexts_too_short_for_head_roles() -> None:
    from circuitlab.analysis import make_probes

    with pytest.raises(ValueError, match="at least 6 tokens"):
        make_probes(d_vocab=114, n_ctx=3)  # modular addition: a, b, =
    for seed in range(20):  # the shortest allowed, BOS + 6: every repeated token's earlier copy is real
        probes = make_probes(d_vocab=20, n_ctx=7, seed=seed)
        earlier = probes.shifted_earlier.expand_as(probes.shifted)
        rows, cols = torch.nonzero(earlier >= 0, as_tuple=True)
        assert len(rows) >= 2
        assert (earlier[rows, cols] < cols).all()
        assert torch.equal(probes.shifted[rows, cols], probes.shifted[rows, earlier[rows, cols]])


def test_probes_start_with_the_models_bos_and_keep_to_the_token_range() -> None:
    from types import SimpleNamespace

    from circuitlab.analysis import make_probes
    from circuitlab.analysis.heads import model_bos_id

    probes = make_probes(d_vocab=50, n_ctx=16, batch=8, bos=1, token_range=(10, 40))
    for batch in (probes.random, probes.repeat, probes.repeat_control, probes.shifted, probes.shifted_control):
        assert (batch[:, 0] == 1).all()
        assert ((batch[:, 1:] >= 10) & (batch[:, 1:] < 40)).all()
    no_bos = make_probes(d_vocab=5, n_ctx=16, batch=8, bos=1)  # a small vocabulary: BOS never drawn as a token
    assert (no_bos.random[:, 1:] != 1).all() and (no_bos.random[:, 0] == 1).all()
    with pytest.raises(ValueError, match="token_range"):
        make_probes(d_vocab=50, n_ctx=16, token_range=(40, 60))
    model = hand_built_induction_model()
    assert model_bos_id(model) == 0  # nothing says otherwise
    model.cfg.extra["bos_token_id"] = 3  # a pretrained config's
    assert model_bos_id(model) == 3
    model.tokenizer = SimpleNamespace(bos_token_id=5)  # a tokenizer's wins
    assert model_bos_id(model) == 5
    model.tokenizer = None
    scores = head_scores(model, batch=4, token_range=(4, V))
    expected = head_scores(model, probes=make_probes(V, N_CTX, batch=4, bos=3, token_range=(4, V)))
    torch.testing.assert_close(scores.scores["first_token"], expected.scores["first_token"])
