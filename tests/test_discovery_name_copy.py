"""The name-copy discovery problem: its corruption, its metric, and its agreed circuit on a trained model."""

from __future__ import annotations

import pytest
import torch

from circuitlab import HookedTransformer, HookedTransformerConfig
from circuitlab.analysis.discovery import Ablation, Circuit
from circuitlab.analysis.discovery.problems import AnswerVsOthers, name_copy_problem, task_problem
from circuitlab.tasks import make_task


def test_corruption_changes_only_the_asked_persons_earlier_first_name():
    task = make_task("name_copy")
    model = HookedTransformer(
        HookedTransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, n_ctx=task.seq_len, d_vocab=task.d_vocab)
    )
    p = name_copy_problem(model, task, batch=40, seed=3)
    data = task.generate(40, 3)
    assert torch.equal(p.clean, data.tokens)
    changed = p.clean != p.corrupted
    assert (changed.sum(1) == 1).all()
    where = changed.int().argmax(1)
    rows = torch.arange(40)
    assert torch.equal(where, data.metadata["answer_pos"] - 1)  # the asked person's first name
    asked = p.clean[rows, data.metadata["end_pos"]]
    assert torch.equal(p.clean[rows, where], asked)  # the one the prompt ends with
    fresh = p.corrupted[rows, where]
    assert torch.isin(fresh, task.first_ids).all() and not (p.clean == fresh[:, None]).any()
    metric = p.metric
    assert torch.equal(metric.answers, data.metadata["answer"]) and metric.others.shape == (40, task.n_people - 1)
    assert not (metric.others == metric.answers[:, None]).any()
    assert p.true_edges[0].startswith("input->a0.") and p.true_edges[-1].endswith("->logits")
    assert any(e.startswith("a0.") and e.startswith("a1.", e.index(">") + 1) for e in p.true_edges)  # K-composition
    assert task_problem(model, task, batch=40, seed=3).true_edges == p.true_edges  # the CLI / lab's dispatch


def test_answer_vs_others_metric():
    logits = torch.zeros(2, 2, 3, 5)  # [circuit, batch, pos, vocab]
    logits[0, 0, 1, 4], logits[0, 0, 1, 2], logits[1, 1, 2, 3] = 6.0, 2.0, -2.0
    metric = AnswerVsOthers(torch.tensor([4, 1]), torch.tensor([[2, 3], [3, 0]]), torch.tensor([1, 2]))
    torch.testing.assert_close(metric(logits), torch.tensor([(6 - 1 + 0) / 2, (0 + 0 + 1) / 2]))
    with pytest.raises(ValueError, match="batch"):
        AnswerVsOthers(torch.tensor([4, 1]), torch.tensor([2, 3]), torch.tensor([1, 2]))


@pytest.mark.slow
def test_agreed_circuit_is_faithful_on_the_trained_one_head_preset():
    """On the name_copy preset with one head per layer (trained as in the benchmark), the agreed circuit
    (from attention roles, not from any discovery method) keeps >= 0.8 of the metric and its complement little."""
    from circuitlab.studies.common import train_preset

    task, result = train_preset("name_copy", 0, 800, model={"n_heads": 1})
    p = name_copy_problem(result.model, task)
    exp = Ablation(p.model, p.clean, p.corrupted, p.metric)
    assert exp.clean_metric > 2.0  # the model picks the right person
    assert exp.evaluate(Circuit(exp.graph, p.truth)) >= 0.8
    assert abs(exp.evaluate(Circuit(exp.graph, ~p.truth))) <= 0.2
