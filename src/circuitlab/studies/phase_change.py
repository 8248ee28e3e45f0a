"""Study `phase-change`: induction heads, in-context learning and the loss drop arrive together
(Olsson et al. 2022), on one time axis.

The 2-layer, one-head-per-layer `induction` model (as in `induction-needs-two-layers`) is trained with a
run directory (log-spaced checkpoints, so the early steps are kept) and evaluated every 10 steps:
every head score (`register_head_scores`) and the in-context-learning score (second-copy loss minus
first-copy loss on 128 fixed sequences). Events, each the first evaluation past the midpoint between
the value at step 0 and the final value:

- induction: the layer-1 head's induction score (attention to the token after the earlier copy);
- ICL: the in-context-learning score;
- loss: the repeated-half loss (the phase change shows as a cliff after a plateau).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..analysis import register_head_scores
from ..tasks import RepeatedTokens
from ..viz.page import Page
from .base import Check, Study, StudyResult, register
from .common import icl_measures, lines, train_preset

NAME = "phase-change"
CLAIM = (
    "In a 2-layer attention-only model on repeated random tokens, the induction head forms abruptly, and the "
    "jump of the in-context-learning score and the drop of the loss happen at the same step."
)
# Thresholds, fixed before any run, as fractions of the run's length; each must hold on every seed.
# Precondition: the head forms at all (the census's induction level is 0.3; 0.5 = clearly formed). Without
# it there is no phase change to time, so the verdict is INCONCLUSIVE, not FAIL.
MIN_FINAL_INDUCTION = 0.5
# Olsson et al. 2022: induction heads form, the ICL score jumps and the loss bump shows "in the same
# window" (a small fraction of training). Here: the three event steps within a tenth of the run...
MAX_EVENT_SPREAD = 0.1
# ...and "abruptly": the induction score goes from 20% to 80% of its rise within a fifth of the run
# (a gradual, linear rise over the run would take 60%).
MAX_RISE_TIME = 0.2

STEPS, QUICK_STEPS, EVAL_EVERY = 600, 150, 10
EVAL_SEED = 424242
SCORE = "heads.induction.L1H0"


def crossing(steps: list[int], values: list[float], fraction: float) -> int:
    """First step at which `values` has moved `fraction` of the way from its first to its last value."""
    start, end = values[0], values[-1]
    target = start + fraction * (end - start)
    rising = end >= start
    for step, value in zip(steps, values, strict=True):
        if (value >= target) if rising else (value <= target):
            return step
    return steps[-1]


def run(out_dir: Path, seeds: list[int], quick: bool) -> StudyResult:
    steps = QUICK_STEPS if quick else STEPS
    per_seed, traces = [], {}
    batch = RepeatedTokens().generate(128, EVAL_SEED)  # the preset's task, fresh sequences

    def icl(model) -> dict[str, float]:
        return icl_measures(model, batch)

    for seed in seeds:
        run_dir = out_dir / f"run_seed{seed}"
        if (run_dir / "config.json").exists():
            shutil.rmtree(run_dir)  # this study's own run directory, from an earlier invocation
        metrics = register_head_scores({"icl": icl}, batch=16)
        _, result = train_preset(
            "induction",
            seed,
            steps,
            model={"n_heads": 1},
            metrics=metrics,
            training={"eval_every": EVAL_EVERY, "n_log_checkpoints": 20},
            out_dir=run_dir,
        )
        h = result.history
        x = [r["step"] for r in h]
        series = {
            "induction score (L1H0)": [r[SCORE] for r in h],
            "previous-token score (L0H0)": [r["heads.previous_token.L0H0"] for r in h],
            "ICL score": [r["icl.icl_score"] for r in h],
            "repeated-half loss": [r["eval_loss"] for r in h],
        }
        events = {
            "induction": crossing(x, series["induction score (L1H0)"], 0.5),
            "icl": crossing(x, series["ICL score"], 0.5),
            "loss": crossing(x, series["repeated-half loss"], 0.5),
        }
        rise = crossing(x, series["induction score (L1H0)"], 0.8) - crossing(x, series["induction score (L1H0)"], 0.2)
        per_seed.append(
            {
                "seed": seed,
                **{f"{k}_step": v for k, v in events.items()},
                "event_spread_steps": max(events.values()) - min(events.values()),
                "induction_rise_steps": rise,
                "final_induction": round(series["induction score (L1H0)"][-1], 4),
                "final_icl": round(series["ICL score"][-1], 4),
                "final_loss": round(series["repeated-half loss"][-1], 4),
            }
        )
        traces[seed] = (x, series, events)

    checks = [
        Check.over_seeds(
            "final_induction_worst",
            [r["final_induction"] for r in per_seed],
            ">=",
            MIN_FINAL_INDUCTION,
            1.0,  # every seed
            precondition=True,
            description="induction score of the layer-1 head at the end",
        ),
        Check.over_seeds(
            "event_spread_fraction_worst",
            [r["event_spread_steps"] / steps for r in per_seed],
            "<=",
            MAX_EVENT_SPREAD,
            1.0,  # every seed
            "latest minus earliest of the three event steps, as a fraction of the run",
        ),
        Check.over_seeds(
            "induction_rise_fraction_worst",
            [r["induction_rise_steps"] / steps for r in per_seed],
            "<=",
            MAX_RISE_TIME,
            1.0,  # every seed
            "steps for the induction score to go from 20% to 80% of its rise, fraction of the run",
        ),
    ]
    measurements = {"steps": steps, "eval_every": EVAL_EVERY, "per_seed": per_seed}
    page = Page(NAME)
    page.heading("Events per seed").table(per_seed)
    page.text(
        "Run directories (metrics.jsonl with every head score, log-spaced checkpoints): run_seed*/ next to this report."
    )
    for seed, (x, series, events) in traces.items():
        norm = {}
        for name, ys in series.items():
            lo, hi = min(ys), max(ys)
            norm[name] = [(y - lo) / (hi - lo) if hi > lo else 0.0 for y in ys]
        fig = lines(
            [max(s, 1) for s in x],
            norm,
            f"Seed {seed}: each curve rescaled to [0, 1], one time axis",
            "step (log)",
            "rescaled value",
            log_x=True,
        )
        for name, step in events.items():
            fig.add_vline(x=max(step, 1), line_dash="dot", annotation_text=name)
        page.figure(fig)
    return StudyResult(checks, measurements, page)


register(
    Study(
        NAME,
        CLAIM,
        run,
        default_seeds=3,
        source="Olsson et al. 2022, In-context Learning and Induction Heads (the phase change)",
        measured_s=(10, 28),
    )
)
