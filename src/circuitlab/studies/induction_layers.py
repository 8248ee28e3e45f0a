"""Study `induction-needs-two-layers`: induction needs composition, so one layer of attention cannot do it.

Setup: the `induction` preset with one head per layer (attention-only, d_model 64) on repeated random tokens,
trained once with 2 layers and once with 1 layer, same steps, batch and learning rate, for each seed.
Measured on 512 fresh sequences:

- repeated-half loss: the task's loss (predictions of the second copy's tokens after its first).
  Without induction the best a model can do is spread its bet over the tokens already seen (about
  log(number seen) ~ 2-3.8 nats here), which gives the 1-layer threshold.
- in-context learning score (Olsson et al. 2022): loss on the second copy minus loss on the *same
  target tokens* in the first copy, earlier in the context; negative when the context helps.
"""

from __future__ import annotations

from pathlib import Path

from ..viz.page import Page
from .base import Check, Study, StudyResult, register
from .common import bars, icl_measures, lines, summary, token_losses, train_preset

NAME = "induction-needs-two-layers"
CLAIM = (
    "On repeated random tokens, a 2-layer attention-only model learns to predict the repeated half "
    "(low loss, strongly negative in-context-learning score) and a 1-layer model trained with the same "
    "budget cannot, in every seed."
)
# Thresholds, fixed before any run (nats); each must hold on every seed. Elhage et al. 2021: induction
# needs K-composition of two heads, so a 1-layer model cannot predict the second copy and a 2-layer one
# can. 0.5 nats = 60% on the right token; 2.0 = no better than a bet on the ~8+ tokens already seen;
# ICL -2 nats: the second copy at least e^2 times likelier than the same tokens in the first.
TWO_LAYER_MAX_REPEAT_LOSS = 0.5
ONE_LAYER_MIN_REPEAT_LOSS = 2.0
TWO_LAYER_MAX_ICL = -2.0
MAX_ICL_GAP = -1.5  # ICL(2 layers) - ICL(1 layer), same seed

STEPS = 600
QUICK_STEPS = 300
EVAL_BATCH, EVAL_SEED = 512, 424242


def run(out_dir: Path, seeds: list[int], quick: bool) -> StudyResult:
    steps = QUICK_STEPS if quick else STEPS
    per_seed: list[dict] = []
    curves: dict[str, tuple[list, list]] = {}
    profiles: dict[str, list[float]] = {}
    for seed in seeds:
        row: dict = {"seed": seed}
        for n_layers in (2, 1):
            task, result = train_preset("induction", seed, steps, model={"n_layers": n_layers, "n_heads": 1})
            result.model.save(out_dir / "models" / f"{n_layers}L_seed{seed}")
            batch = task.generate(EVAL_BATCH, EVAL_SEED)
            m = icl_measures(result.model, batch)
            row.update({f"{n_layers}L_{k}": round(v, 4) for k, v in m.items()})
            label = f"{n_layers} layer{'s' * (n_layers > 1)}, seed {seed}"
            curves[label] = ([h["step"] for h in result.history], [h["eval_loss"] for h in result.history])
            if seed == seeds[0]:
                loss = token_losses(result.model, batch)
                offset = batch.loss_mask.long().cumsum(1)  # 1 at the first scored prediction of the copy
                profiles[label] = [
                    float(loss[(offset == k) & batch.loss_mask].mean()) for k in range(1, task.min_chunk)
                ]
        row["icl_gap"] = round(row["2L_icl_score"] - row["1L_icl_score"], 4)
        per_seed.append(row)

    two_loss = summary([r["2L_late_loss"] for r in per_seed])
    one_loss = summary([r["1L_late_loss"] for r in per_seed])
    two_icl = summary([r["2L_icl_score"] for r in per_seed])
    gap = summary([r["icl_gap"] for r in per_seed])
    checks = [
        Check.over_seeds(
            "two_layer_repeat_loss_worst",
            [r["2L_late_loss"] for r in per_seed],
            "<=",
            TWO_LAYER_MAX_REPEAT_LOSS,
            1.0,  # every seed
            "repeated-half loss of the 2-layer model, worst seed (nats)",
        ),
        Check.over_seeds(
            "one_layer_repeat_loss_best",
            [r["1L_late_loss"] for r in per_seed],
            ">=",
            ONE_LAYER_MIN_REPEAT_LOSS,
            1.0,  # every seed
            "repeated-half loss of the 1-layer model, best seed (nats)",
        ),
        Check.over_seeds(
            "two_layer_icl_worst",
            [r["2L_icl_score"] for r in per_seed],
            "<=",
            TWO_LAYER_MAX_ICL,
            1.0,  # every seed
            "ICL score (second-copy loss minus first-copy loss) of the 2-layer model, worst seed",
        ),
        Check.over_seeds(
            "icl_gap_worst",
            [r["icl_gap"] for r in per_seed],
            "<=",
            MAX_ICL_GAP,
            1.0,  # every seed
            "ICL score of the 2-layer minus the 1-layer model, same seed, worst seed",
        ),
    ]
    measurements = {
        "steps": steps,
        "per_seed": per_seed,
        "two_layer_repeat_loss": two_loss,
        "one_layer_repeat_loss": one_loss,
        "two_layer_icl": two_icl,
        "icl_gap": gap,
    }

    page = Page(NAME)
    page.heading("Per seed").table(per_seed)
    page.text(
        "early_loss: the chunk's tokens predicted in their first copy (no earlier occurrence); late_loss: the same "
        "tokens in the second copy (the task's loss); icl_score = late - early."
    )
    labels = [f"seed {r['seed']}" for r in per_seed]
    page.figure(
        bars(
            labels,
            {
                "2 layers": [r["2L_icl_score"] for r in per_seed],
                "1 layer": [r["1L_icl_score"] for r in per_seed],
            },
            "In-context learning score per seed",
            "nats (negative: the context helps)",
        ),
    )
    page.figure(
        _curves(curves),
        "Eval loss on the repeated half during training (same budget for both depths).",
    )
    page.figure(
        lines(
            list(range(1, len(next(iter(profiles.values()))) + 1)),
            profiles,
            f"Loss along the second copy (seed {seeds[0]})",
            "token of the copy (1 = first predicted)",
            "nats",
        ),
    )
    return StudyResult(checks, measurements, page)


def _curves(curves: dict[str, tuple[list, list]]):
    import plotly.graph_objects as go

    fig = go.Figure([go.Scatter(x=x, y=y, mode="lines", name=name) for name, (x, y) in curves.items()])
    fig.update_layout(title="Training curves", xaxis_title="step", yaxis_title="eval loss (nats)", height=400)
    return fig


register(
    Study(
        NAME,
        CLAIM,
        run,
        default_seeds=3,
        source="Elhage et al. 2021; Olsson et al. 2022 (induction heads need two layers)",
        measured_s=(30, 33),
    )
)
