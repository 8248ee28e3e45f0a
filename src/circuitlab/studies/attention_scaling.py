"""Study `attention-scaling`: what the 1/sqrt(d_head) in attention is for (Vaswani et al. 2017).

Unscaled, q . k is a sum of d_head terms, so at initialisation its spread grows like sqrt(d_head) and
the softmax saturates ("pushing the softmax function into regions where it has extremely small
gradients"). Setup: 2-layer attention-only models with LayerNorm (unit-variance inputs, as in GPT-style
models), d_model 64, one head of width d_head in {8, ..., 256}, with and without the scale, at
initialisation (one model per seed), on a batch of repeated random tokens:

- attention entropy, normalised by log(number of visible keys) (1 = uniform), over queries q >= 4;
- saturation: fraction of those queries whose largest attention weight exceeds 0.9;
- gradient norm of the loss with respect to W_Q and W_K (all layers), and of all parameters.
Then training curves of the induction task at d_head 128 with and without the scale (measured, no
threshold).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..model import HookedTransformer
from ..tasks import RepeatedTokens, masked_loss
from ..viz.page import Page
from .base import Check, Study, StudyResult, register
from .common import lines, train_preset

NAME = "attention-scaling"
CLAIM = (
    "Without 1/sqrt(d_head), attention at initialisation saturates as d_head grows (entropy falls, weights "
    "become one-hot) and the gradient reaching W_Q and W_K shrinks; with the scale, attention entropy stays high "
    "and flat across d_head."
)
D_HEADS = (8, 16, 32, 64, 128, 256)
# Thresholds, fixed before any run; measured at the largest d_head (mean over seeds).
MIN_SCALED_ENTROPY = 0.8
MAX_SCALED_ENTROPY_DRIFT = 0.1  # |entropy(largest d_head) - entropy(smallest)| with the scale
MAX_UNSCALED_ENTROPY = 0.5
MIN_UNSCALED_SATURATION = 0.5
MAX_SCALED_SATURATION = 0.05
MAX_QK_GRAD_RATIO = 0.5  # QK gradient norm unscaled / scaled

TRAIN_D_HEAD, STEPS, QUICK_STEPS, QUICK_BATCH = 128, 600, 20, 16
BATCH, DATA_SEED = 64, 424242


def init_measures(d_head: int, scaled: bool, seed: int, task: RepeatedTokens) -> dict[str, float]:
    cfg = task.model_config(
        n_layers=2,
        d_model=64,
        n_heads=1,
        d_head=d_head,
        attn_only=True,
        seed=seed,
        normalization_type="LN",
        attn_scale=None if scaled else 1.0,
    )
    model = HookedTransformer(cfg)
    batch = task.generate(BATCH, DATA_SEED)
    patterns = []
    hooks = [(f"blocks.{l}.attn.hook_pattern", lambda p, hook: patterns.append(p) or p) for l in range(2)]
    loss = masked_loss(model.run_with_hooks(batch.tokens, fwd_hooks=hooks), batch)
    loss.backward()
    pattern = torch.stack(patterns).detach()[:, :, 0, 4:]  # [layer, batch, query >= 4, key]
    visible = torch.arange(4, pattern.shape[-1]) + 1  # keys a query at position q sees: q + 1
    entropy = -(pattern * pattern.clamp(min=1e-30).log()).sum(-1) / visible.float().log()
    qk = sum(p.grad.norm() ** 2 for n, p in model.named_parameters() if n.endswith(("W_Q", "W_K"))) ** 0.5
    total = sum(p.grad.norm() ** 2 for p in model.parameters() if p.grad is not None) ** 0.5
    return {
        "entropy": float(entropy.mean()),
        "saturation": float((pattern.amax(-1) > 0.9).float().mean()),
        "qk_grad_norm": float(qk),
        "grad_norm": float(total),
    }


def run(out_dir: Path, seeds: list[int], quick: bool) -> StudyResult:
    task = RepeatedTokens()
    grid: list[dict] = []
    for d_head in D_HEADS:
        for scaled in (True, False):
            runs = [init_measures(d_head, scaled, seed, task) for seed in seeds]
            grid.append(
                {
                    "d_head": d_head,
                    "scaled": scaled,
                    **{k: round(sum(r[k] for r in runs) / len(runs), 5) for k in runs[0]},
                }
            )

    def at(d_head: int, scaled: bool, key: str) -> float:
        return next(r[key] for r in grid if r["d_head"] == d_head and r["scaled"] == scaled)

    big, small = D_HEADS[-1], D_HEADS[0]
    checks = [
        Check(
            "scaled_entropy_at_max_d_head",
            at(big, True, "entropy"),
            ">=",
            MIN_SCALED_ENTROPY,
            f"normalised attention entropy at init, d_head {big}, with the scale",
        ),
        Check(
            "scaled_entropy_drift",
            abs(at(big, True, "entropy") - at(small, True, "entropy")),
            "<=",
            MAX_SCALED_ENTROPY_DRIFT,
            f"change of that entropy from d_head {small} to {big}, with the scale",
        ),
        Check(
            "unscaled_entropy_at_max_d_head",
            at(big, False, "entropy"),
            "<=",
            MAX_UNSCALED_ENTROPY,
            f"normalised attention entropy at init, d_head {big}, without the scale",
        ),
        Check(
            "unscaled_saturation_at_max_d_head",
            at(big, False, "saturation"),
            ">=",
            MIN_UNSCALED_SATURATION,
            f"fraction of queries with a weight > 0.9, d_head {big}, without the scale",
        ),
        Check(
            "scaled_saturation_at_max_d_head",
            at(big, True, "saturation"),
            "<=",
            MAX_SCALED_SATURATION,
            "the same with the scale",
        ),
        Check(
            "qk_grad_ratio_at_max_d_head",
            at(big, False, "qk_grad_norm") / at(big, True, "qk_grad_norm"),
            "<=",
            MAX_QK_GRAD_RATIO,
            f"gradient norm on W_Q, W_K at init, unscaled / scaled, d_head {big}",
        ),
    ]

    steps = QUICK_STEPS if quick else STEPS
    curves, finals = {}, {}
    for scaled in (True, False):
        label = "scaled" if scaled else "unscaled"
        for seed in seeds:
            model = {
                "n_heads": 1,
                "d_head": TRAIN_D_HEAD,
                "normalization_type": "LN",
                "attn_scale": None if scaled else 1.0,
            }
            _, result = train_preset(
                "induction",
                seed,
                steps,
                model=model,
                training={"eval_every": max(steps // 12, 1), **({"batch_size": QUICK_BATCH} if quick else {})},
            )
            curves[f"{label} seed {seed}"] = (
                [h["step"] for h in result.history],
                [h["eval_loss"] for h in result.history],
            )
            finals.setdefault(label, []).append(round(result.final["eval_loss"], 4))
    measurements = {"init_grid": grid, "training_steps": steps, "final_loss": finals, "train_d_head": TRAIN_D_HEAD}

    page = Page(NAME)
    page.heading("At initialisation").table(grid)
    for key, title in (
        ("entropy", "Normalised attention entropy at init"),
        ("saturation", "Fraction of saturated queries (max weight > 0.9) at init"),
        ("qk_grad_norm", "Gradient norm on W_Q and W_K at init"),
    ):
        page.figure(
            lines(
                D_HEADS,
                {
                    name: [at(d, flag, key) for d in D_HEADS]
                    for name, flag in (("with 1/sqrt(d_head)", True), ("without", False))
                },
                title,
                "d_head",
                key,
                log_x=True,
                log_y=key == "qk_grad_norm",
            )
        )
    page.heading(f"Training at d_head {TRAIN_D_HEAD}")
    import plotly.graph_objects as go

    fig = go.Figure([go.Scatter(x=x, y=y, mode="lines", name=name) for name, (x, y) in curves.items()])
    fig.update_layout(title="Eval loss on the repeated half", xaxis_title="step", yaxis_title="nats", height=400)
    page.figure(fig)
    page.text(f"Final eval loss: {finals}")
    return StudyResult(checks, measurements, page)


register(Study(NAME, CLAIM, run, default_seeds=3))
