"""On a trained 2-layer attention-only model: the census finds the induction circuit, and the head
scores recorded during training show when it formed."""

from __future__ import annotations

from circuitlab.analysis import head_census, run_with_ablation
from circuitlab.tasks import masked_loss


def test_census_names_a_layer_1_induction_head(trained_induction) -> None:
    task, result = trained_induction
    census = head_census(result.model, task=task)
    induction = census.heads_with("induction")
    assert induction and all(row.layer == 1 for row in induction)
    # Ablating one raises the repeated-part loss many times over (the other is a partial backup) ...
    assert min(row.ablation_loss_increase for row in induction) > 10 * census.clean_loss
    # ... and ablating all of them destroys the repeat: the loss rises by over a nat.
    batch = task.generate(32, seed=7)
    heads = [(row.layer, row.head) for row in induction]
    ablated = run_with_ablation(result.model, batch.tokens, heads=heads, reference=batch.tokens)
    assert masked_loss(ablated, batch) > masked_loss(result.model(batch.tokens), batch) + 1.0
    assert census.heads_with("previous-token") and census.heads_with("previous-token")[0].layer == 0
    # The default probe (repeated random tokens, no task given) agrees.
    assert {r.label for r in head_census(result.model).heads_with("induction")} == {r.label for r in induction}


def test_head_score_trajectories(trained_induction) -> None:
    _, result = trained_induction
    history = result.history
    keys = [k for k in history[-1] if k.startswith("heads.induction.L1")]
    assert len(keys) == 2 and "heads.previous_token.L0H0" in history[-1]
    best_end = max(history[-1][k] for k in keys)
    best_start = max(history[0][k] for k in keys)
    assert best_start < 0.2 < 0.8 < best_end  # the induction score rises from ~0 during training
    # It rises when the loss falls: the first eval with induction > 0.5 has a much lower loss than step 0.
    formed = next(row for row in history if max(row[k] for k in keys) > 0.5)
    assert formed["eval_loss"] < 0.5 * history[0]["eval_loss"]
