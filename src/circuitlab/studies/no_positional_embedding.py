"""Study `no-positional-embedding`: what happens to previous-token and induction heads without W_pos.

Setup: the `induction` preset with one head per layer, trained with `positional_embedding_type="none"`
(causal mask kept), against the same model with learned positions, same budget. A 3-layer model
without positions is trained too (full mode): can a later layer recover position from the causal
mask and rebuild the circuit one layer up?

Prediction stated before running, from the architecture: layer-0 attention scores depend on the two
tokens only, so on random tokens no layer-0 head can single out the previous position; a 2-layer model
then has no previous-token head to K-compose with and cannot predict the repeated half.
"""

from __future__ import annotations

from pathlib import Path

from ..analysis import head_scores
from ..viz.page import Page
from .base import Check, Study, StudyResult, register
from .common import attention_pattern, bars, heatmap, icl_measures, train_preset

NAME = "no-positional-embedding"
CLAIM = (
    "Without positional embeddings (causal mask kept) no layer-0 previous-token head can form, and a 2-layer "
    "attention-only model fails to predict the repeated half of repeated random tokens that the same model "
    "with learned positions predicts."
)
# Thresholds, fixed before any run; each must hold on every seed.
# Claim: with only the causal mask, layer 0 cannot tell "the previous token" from any other earlier one.
MAX_L0_PREV_TOKEN = 0.4  # census level for a previous-token head: the layer-0 heads must stay below it
# Without a previous-token head there is no induction: the repeated half stays near the loss of a bet
# on the tokens already seen (log 8 - log 30 = 2.1-3.4 nats); 1.5 leaves room below that.
MIN_NOPOS_REPEAT_LOSS = 1.5  # nats: the 2-layer model without positions does not do induction
# Precondition: the control (same model, learned positions) does induction; if it does not, the budget
# failed, not the claim (INCONCLUSIVE). 0.5 nats = the induction-needs-two-layers level.
MAX_CONTROL_REPEAT_LOSS = 0.5  # nats: the same model with positions does

STEPS = 600
QUICK_STEPS = {"positions_2L": 300, "no_positions_2L": 150}  # quick: a smoke test only
EVAL_BATCH, EVAL_SEED = 512, 424242
CONDITIONS = {
    "positions_2L": {"n_layers": 2},
    "no_positions_2L": {"n_layers": 2, "positional_embedding_type": "none"},
    "no_positions_3L": {"n_layers": 3, "positional_embedding_type": "none"},
}


def run(out_dir: Path, seeds: list[int], quick: bool) -> StudyResult:
    steps = QUICK_STEPS if quick else dict.fromkeys(CONDITIONS, STEPS)
    conditions = {k: v for k, v in CONDITIONS.items() if not (quick and k == "no_positions_3L")}
    per_run, examples = [], {}
    for seed in seeds:
        for label, over in conditions.items():
            task, result = train_preset("induction", seed, steps[label], model={**over, "n_heads": 1})
            model = result.model
            model.save(out_dir / "models" / f"{label}_seed{seed}")
            scores = head_scores(model, seed=0)
            m = icl_measures(model, task.generate(EVAL_BATCH, EVAL_SEED))
            prev = scores.scores["previous_token"][:, 0]  # [layer]
            per_run.append(
                {
                    "seed": seed,
                    "condition": label,
                    "repeat_loss": round(m["late_loss"], 4),
                    "icl_score": round(m["icl_score"], 4),
                    **{f"prev_token_L{l}": round(float(v), 4) for l, v in enumerate(prev)},
                    "prev_token_baseline": round(float(scores.baselines["previous_token"][0, 0]), 4),
                    **{f"induction_L{l}": round(float(v), 4) for l, v in enumerate(scores.scores["induction"][:, 0])},
                }
            )
            if seed == seeds[0]:
                examples[label] = (model, task)

    def pick(label: str, key: str) -> list[float]:
        return [r[key] for r in per_run if r["condition"] == label]

    checks = [
        Check.over_seeds(
            "no_positions_L0_prev_token_worst",
            pick("no_positions_2L", "prev_token_L0"),
            "<",
            MAX_L0_PREV_TOKEN,
            1.0,  # every seed
            "layer-0 previous-token score without positional embeddings (highest seed)",
        ),
        Check.over_seeds(
            "no_positions_repeat_loss_best",
            pick("no_positions_2L", "repeat_loss"),
            ">=",
            MIN_NOPOS_REPEAT_LOSS,
            1.0,  # every seed
            "repeated-half loss of the 2-layer model without positions (best seed, nats)",
        ),
        Check.over_seeds(
            "positions_repeat_loss_worst",
            pick("positions_2L", "repeat_loss"),
            "<=",
            MAX_CONTROL_REPEAT_LOSS,
            1.0,  # every seed
            precondition=True,
            description="repeated-half loss of the control with learned positions (worst seed)",
        ),
    ]
    measurements = {"steps": steps, "per_run": per_run}
    page = Page(NAME)
    page.heading("Per seed and condition").table(per_run)
    first = [r for r in per_run if r["seed"] == seeds[0]]
    page.figure(
        bars(
            [r["condition"] for r in first],
            {"repeated-half loss": [r["repeat_loss"] for r in first]},
            f"Repeated-half loss (seed {seeds[0]})",
            "nats",
        )
    )
    for label, (model, task) in examples.items():
        tokens = task.generate(1, 5).tokens
        idx = [f"{i}:{t}" for i, t in enumerate(tokens[0].tolist())]
        for layer in range(model.cfg.n_layers):
            page.figure(
                heatmap(
                    attention_pattern(model, tokens, layer)[0, 0],
                    f"{label}: layer {layer} attention",
                    idx,
                    idx,
                    "key",
                    "query",
                )
            )
    return StudyResult(checks, measurements, page)


register(
    Study(
        NAME,
        CLAIM,
        run,
        default_seeds=3,
        source="a didactic check: position from the causal mask alone (Haviv et al. 2022, NoPos)",
        measured_s=(55, 68),
    )
)
