"""Hand-built models with known circuits: they behave as designed, and discovery finds their circuits."""

from __future__ import annotations

import pytest
import torch

from circuitlab.analysis.discovery import Ablation, Circuit, acdc, edge_attribution, roc_auc, sender_activations
from circuitlab.compiled import Builder, copy_position, duplicate_token, gated_mlp, induction, known_circuits


def _pattern(model, tokens, layer):
    _, cache = model.run_with_cache(tokens, names_filter=f"blocks.{layer}.attn.hook_pattern")
    return cache["pattern", layer]  # [batch, head, query, key]


def test_induction_model_behaves_as_built():
    p = induction(batch=4, chunk=6)
    pattern = _pattern(p.model, p.clean, 0)
    n = p.clean.shape[1]
    assert pattern[:, 0].diagonal(offset=-1, dim1=-2, dim2=-1).min() > 0.99  # previous-token head
    ind = _pattern(p.model, p.clean, 1)[:, 0]  # [batch, query, key]
    second = torch.arange(7, n)  # queries in the second copy attend to the token after the earlier copy
    assert ind[:, second, second - 5].min() > 0.99
    logits = p.model(p.clean)
    assert (logits[:, 7:-1].argmax(-1) == p.clean[:, 8:]).all()  # predicts the repeated next token


def test_duplicate_token_model_detects_duplicates():
    p = duplicate_token(batch=16)
    with torch.no_grad():
        clean, corrupted = p.model(p.clean)[:, -1], p.model(p.corrupted)[:, -1]
    assert (clean[:, 1] > clean[:, 2]).all() and (corrupted[:, 1] < corrupted[:, 2]).all()  # YES vs NO
    pattern = _pattern(p.model, p.clean, 0)[:, 0, -1]  # [batch, key] for the last query
    earlier = (p.clean[:, :-1] == p.clean[:, -1:]).float().argmax(-1)
    assert pattern[torch.arange(16), earlier].min() > 0.99


def test_copy_position_model_copies_position_one():
    p = copy_position(batch=8)
    with torch.no_grad():
        assert (p.model(p.clean)[:, -1].argmax(-1) == p.clean[:, 1]).all()
        assert (p.model(p.corrupted)[:, -1].argmax(-1) == p.corrupted[:, 1]).all()


def test_builder_rejects_mismatched_subspaces():
    b = Builder(8, 6, n_layers=1, n_heads=1, spaces={"flag": 1}, d_head=8)
    with pytest.raises(ValueError, match="cannot copy"):
        b.copy(0, 0, "tok", "flag")
    with pytest.raises(ValueError, match="unknown subspace"):
        b.span("nowhere")


@pytest.mark.parametrize("problem", known_circuits(), ids=lambda p: p.name)
def test_true_circuit_is_faithful_and_methods_find_it(problem):
    exp = Ablation(problem.model, problem.clean, problem.corrupted, problem.metric)
    truth = problem.truth
    assert exp.evaluate(Circuit(exp.graph, truth)) == pytest.approx(1.0, abs=1e-3)
    assert exp.evaluate(Circuit(exp.graph, ~truth)) == pytest.approx(0.0, abs=1e-3)
    # Each distractor's output differs between the runs, yet ablating every edge out of it changes nothing.
    g = exp.graph
    clean_acts = sender_activations(problem.model, problem.clean, g)
    for name in problem.distractors:
        s = g.senders.index(name)
        assert (clean_acts[:, :, s] - exp.ablated[:, :, s]).norm() > 1.0, name
        assert exp.evaluate(Circuit(g, g.edge_index[:, 0] != s)) == pytest.approx(1.0, abs=1e-9), name
        assert not truth[g.edge_index[:, 0] == s].any()
    for method in ("eap", "eap-ig") if problem.name != "gated-mlp" else ("eap-ig",):
        scores = edge_attribution(problem.model, problem.clean, problem.corrupted, problem.metric, method=method)
        assert roc_auc(scores, truth) >= 0.95, method
    found = acdc(problem.model, problem.clean, problem.corrupted, problem.metric, threshold=0.01, experiment=exp)
    assert set(found.edges) == set(problem.true_edges)


def test_induction_problem_finds_the_built_heads_from_their_scores():
    """`induction_problem` names the agreed circuit from head scores: on the built model, the built heads."""
    from circuitlab.analysis.discovery.problems import induction_problem
    from circuitlab.tasks import make_task

    built = induction(batch=2, chunk=8)
    task = make_task("repeated_tokens", vocab=24, length=17, min_chunk=3, max_chunk=8, max_gap=0)
    problem = induction_problem(built.model, task, batch=16)
    assert problem.true_edges == built.true_edges
    exp = Ablation(problem.model, problem.clean, problem.corrupted, problem.metric)
    assert exp.evaluate(Circuit(exp.graph, problem.truth)) > 0.99


def test_gated_mlp_defeats_first_order_attribution_only():
    """EAP reads a zero gradient at the closed gate and the slope of |x| at the clean point; EAP-IG does not."""
    p = gated_mlp()
    g = p.graph
    eap = edge_attribution(p.model, p.clean, p.corrupted, p.metric, method="eap")
    ig = edge_attribution(p.model, p.clean, p.corrupted, p.metric, method="eap-ig")
    gate, fold = g.edge_id("input->m0"), g.edge_id("input->m1")
    assert float(eap[gate]) == 0.0 and int(eap.abs().argmax()) == fold
    assert roc_auc(eap, p.truth) < 0.85 and roc_auc(ig, p.truth) == 1.0
    exp = Ablation(p.model, p.clean, p.corrupted, p.metric)
    only = torch.ones(2, g.n_edges, dtype=torch.bool)
    only[0, gate], only[1, fold] = False, False
    exact = exp.metrics(only) - exp.clean_metric  # ablating each edge alone
    assert float(ig[gate]) == pytest.approx(float(exact[0]), rel=1e-6) and float(exact[1]) == pytest.approx(0.0)
    assert abs(float(ig[fold])) < 1e-9
