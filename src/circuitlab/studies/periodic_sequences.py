"""Study `periodic-sequences`: the Séminaire Turing experiment, with its explanation put to a test.

Setup: the `periodic` preset (2 layers, 1 head each, d_model 64, d_head 16, MLPs; AdamW lr 1e-3,
batch 64, 1280 steps = 8192 sequences x 10 epochs) on BOS + a random pattern of period f in [15, 30]
repeated to 91 tokens; each seed trained with weight decay 1e-2 (as in the report) and with 0.
Measured on 256 fresh sequences:

- previous-token head: mean attention of the layer-0 head to q-1; induction head: mean attention of the
  layer-1 head to q-f+1 (the token after the previous occurrence of the current one). "Present" uses
  the census levels (circuitlab.analysis.census): >= 0.4 and >= 0.3.
- attention accuracy along the sequence: per query position, the fraction of sequences whose argmax
  key is the right one (previous token for L0, induction target for L1): does the diagonal stop?
- W_pos: effective rank, components for 90% of variance, and the norm of each position's embedding.
The report's explanation (weight decay + no need leaves late positions unlearned) predicts that
without weight decay the diagonal reaches further.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..analysis import positional_structure
from ..viz.page import Page
from .base import Check, Study, StudyResult, register
from .common import attention_pattern, lines, train_preset

NAME = "periodic-sequences"
CLAIM = (
    "On periodic random sequences, 2-layer 1-head-per-layer transformers form a previous-token head and an "
    "induction head in most seeds, their attention diagonals stop part-way along the sequence, and weight decay "
    "is the cause: trained without it, the previous-token diagonal reaches further."
)
# Thresholds, fixed before any run.
PREV_LEVEL, INDUCTION_LEVEL = 0.4, 0.3  # census levels for "present"
MIN_FORMATION_FRACTION = 0.8  # seeds (weight decay on) with both heads: "almost every run"
MIN_EARLY_ACCURACY = 0.8  # previous-token accuracy over the first third of positions...
MAX_LATE_ACCURACY = 0.5  # ...and over the last third: the diagonal stops part-way
MIN_WD_EFFECT = 0.2  # last-third accuracy without weight decay minus with it

WEIGHT_DECAY = {"wd_on": 1e-2, "wd_off": 0.0}
STEPS, QUICK_STEPS, QUICK_BATCH = 1280, 20, 16  # quick: a smoke test only
EVAL_BATCH, EVAL_SEED = 256, 424242


def attention_accuracy(model, batch) -> dict[str, torch.Tensor]:
    """Per query position: attention to / argmax accuracy on the previous token (L0) and the induction target (L1)."""
    n = batch.tokens.shape[1]
    pos = torch.arange(n)[None, :]
    period = batch.metadata["period"][:, None]
    prev_key = (pos - 1).expand(len(batch), -1)
    ind_key = torch.where(pos > period, pos - period + 1, -1)  # after BOS, the earlier occurrence is q - f
    out = {}
    for name, layer, key in (("prev", 0, prev_key), ("induction", 1, ind_key)):
        pattern = attention_pattern(model, batch.tokens, layer)[:, 0]  # [batch, query, key]
        valid = key >= 0
        attn = pattern.gather(-1, key.clamp(min=0)[..., None])[..., 0]  # [batch, query]
        hit = (pattern.argmax(-1) == key) & valid
        count = valid.sum(0).clamp(min=1)
        out[f"{name}_attention"] = (attn * valid).sum(0) / count  # [query]
        out[f"{name}_accuracy"] = hit.sum(0) / count
        out[f"{name}_score"] = float((attn * valid).sum() / valid.sum())
        out[f"{name}_valid"] = valid.any(0)
    return out


def run(out_dir: Path, seeds: list[int], quick: bool) -> StudyResult:
    per_run, curves = [], {}
    for seed in seeds:
        for label, wd in WEIGHT_DECAY.items():
            steps = QUICK_STEPS if quick else STEPS
            training = {"weight_decay": wd, **({"batch_size": QUICK_BATCH} if quick else {})}
            task, result = train_preset("periodic", seed, steps, training=training)
            model = result.model
            model.save(out_dir / "models" / f"{label}_seed{seed}")
            acc = attention_accuracy(model, task.generate(EVAL_BATCH, EVAL_SEED))
            n = task.seq_len
            third = (n - 1) // 3
            structure = positional_structure(model)
            row = {
                "seed": seed,
                "condition": label,
                "prev_score": round(acc["prev_score"], 4),
                "induction_score": round(acc["induction_score"], 4),
                "both_heads": acc["prev_score"] >= PREV_LEVEL and acc["induction_score"] >= INDUCTION_LEVEL,
                "prev_acc_first_third": round(float(acc["prev_accuracy"][1 : 1 + third].mean()), 4),
                "prev_acc_last_third": round(float(acc["prev_accuracy"][n - third :].mean()), 4),
                "prev_diagonal_extent": round(float((acc["prev_accuracy"][1:] >= 0.5).float().mean()), 4),
                "induction_acc_last_third": round(float(acc["induction_accuracy"][n - third :].mean()), 4),
                "wpos_effective_rank": round(structure.effective_rank, 3),
                "wpos_dims_for_90": structure.dims_for_90,
                "final_loss": round(result.final["eval_loss"], 4),
            }
            per_run.append(row)
            curves[f"{label} seed {seed}"] = {
                "prev": acc["prev_accuracy"].tolist(),
                "induction": acc["induction_accuracy"].tolist(),
                "norms": structure.position_norms.tolist(),
                "variance": structure.explained_variance[:16].tolist(),
            }

    def rows(label: str) -> list[dict]:
        return [r for r in per_run if r["condition"] == label]

    def mean(label: str, key: str) -> float:
        return sum(float(r[key]) for r in rows(label)) / len(rows(label))

    formed = mean("wd_on", "both_heads")
    checks = [
        Check(
            "formation_fraction_wd_on",
            formed,
            ">=",
            MIN_FORMATION_FRACTION,
            "fraction of seeds (weight decay 1e-2) with a previous-token head in L0 and an induction head in L1",
        ),
        Check(
            "prev_acc_first_third_wd_on",
            mean("wd_on", "prev_acc_first_third"),
            ">=",
            MIN_EARLY_ACCURACY,
            "previous-token argmax accuracy over the first third of positions, mean over seeds",
        ),
        Check(
            "prev_acc_last_third_wd_on",
            mean("wd_on", "prev_acc_last_third"),
            "<=",
            MAX_LATE_ACCURACY,
            "previous-token argmax accuracy over the last third of positions, mean over seeds",
        ),
        Check(
            "weight_decay_effect",
            mean("wd_off", "prev_acc_last_third") - mean("wd_on", "prev_acc_last_third"),
            ">=",
            MIN_WD_EFFECT,
            "last-third previous-token accuracy without weight decay minus with it",
        ),
    ]
    summary = {
        label: {k: round(mean(label, k), 4) for k in per_run[0] if k not in ("seed", "condition")}
        for label in WEIGHT_DECAY
    }
    measurements = {"per_run": per_run, "mean_by_condition": summary, "steps": QUICK_STEPS if quick else STEPS}
    return StudyResult(checks, measurements, _page(per_run, curves))


def _page(per_run: list[dict], curves: dict) -> Page:
    page = Page(NAME)
    page.heading("Per seed and condition").table(per_run)
    positions = list(range(len(next(iter(curves.values()))["prev"])))
    for key, title in (
        ("prev", "Layer 0: previous-token argmax accuracy by query position"),
        ("induction", "Layer 1: induction argmax accuracy by query position"),
    ):
        page.figure(lines(positions, {k: v[key] for k, v in curves.items()}, title, "query position", "accuracy"))
    page.figure(
        lines(
            positions,
            {k: v["norms"] for k, v in curves.items()},
            "||W_pos[p] - mean||: positions left unlearned stay small (or at their initial size)",
            "position",
            "norm",
        )
    )
    page.figure(
        lines(
            list(range(1, 17)),
            {k: v["variance"] for k, v in curves.items()},
            "PCA of W_pos: explained variance per component",
            "component",
            "fraction",
            log_y=True,
        )
    )
    return page


register(Study(NAME, CLAIM, run, default_seeds=5))
