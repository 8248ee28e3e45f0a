"""Named starting points: a task, a model shape and training settings that work together.

`induction` is the default 2-layer attention-only model on repeated random tokens: its loss on the
repeated half drops below 0.1 nats within a few hundred steps (600 steps take 10 s on one thread of this
project's 2-core machine, measured).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..tasks import make_task


@dataclass(frozen=True)
class Preset:
    task: str
    task_params: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    description: str = ""


PRESETS: dict[str, Preset] = {
    "induction": Preset(
        task="repeated_tokens",
        model=dict(n_layers=2, n_heads=2, d_model=64, attn_only=True, normalization_type=None),
        training=dict(
            steps=600,
            lr=1e-2,
            warmup_steps=20,
            schedule="cosine",
            min_lr_fraction=0.1,
            batch_size=64,
            eval_every=50,
            n_log_checkpoints=12,
        ),
        description="2-layer attention-only model on repeated random tokens (induction heads)",
    ),
    "periodic": Preset(
        task="periodic",
        # Attention-only as in the report's code: with MLPs (d_mlp 256) the model learned nothing in 1280
        # steps (loss on periods 2-3 still 3.76 nats); attention-only reaches 0.17 nats in the same budget.
        model=dict(n_layers=2, n_heads=1, d_model=64, d_head=16, attn_only=True),
        training=dict(steps=1280, lr=1e-3, weight_decay=1e-2, batch_size=64, eval_every=64, n_log_checkpoints=12),
        description="the Séminaire Turing setup: 2 layers, 1 head each, d_head 16, attention-only, periodic sequences",
    ),
    "most_frequent": Preset(
        task="most_frequent",
        model=dict(n_layers=2, n_heads=4, d_model=64),
        training=dict(steps=2000, lr=3e-3, eval_every=100),
        description="predict the most frequent token so far",
    ),
    "ioi": Preset(
        task="ioi",
        model=dict(n_layers=2, n_heads=4, d_model=64),
        training=dict(steps=1000, lr=3e-3, eval_every=100),
        description="indirect-object identification on a word-level vocabulary",
    ),
    "name_copy": Preset(
        task="name_copy",
        model=dict(n_layers=2, n_heads=4, d_model=64, attn_only=True, normalization_type=None),
        training=dict(
            steps=800, lr=1e-2, warmup_steps=20, schedule="cosine", min_lr_fraction=0.1, batch_size=512, eval_every=100
        ),
        description="copy the last name after a repeated first name (induction on templated text)",
    ),
    "modular_addition": Preset(
        task="modular_addition",
        model=dict(n_layers=1, n_heads=4, d_model=128, act_fn="relu", normalization_type=None),
        training=dict(steps=10000, lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98), batch_size=512, eval_every=500),
        description="a + b mod 113 with 30% of pairs for training (grokking)",
    ),
    "balanced_parentheses": Preset(
        task="balanced_parentheses",
        model=dict(n_layers=2, n_heads=2, d_model=64, causal=False),
        training=dict(steps=2000, lr=1e-3, eval_every=100),
        description="classify bracket strings as balanced (bidirectional attention)",
    ),
    # Does any set-up form induction heads on this corpus in CPU minutes? Tried (2026-12-02, 1 thread, the other
    # core busy; train wall time with evaluations; induction = the census score on repeated random tokens, max
    # over heads and checkpoints, vs its baseline; the same on probes of the frequent training tokens only gave the
    # same numbers; prev = best previous-token score at the end; ICL = held-out late - early loss at the end):
    #   config (2 layers x 4 heads)                        steps  wall    induction   prev  ICL     heads
    #   tiny-lm as below (BPE 4096, ctx 256, d128, MLP)      700   532 s  .009/.007   0.04  -0.04   none
    #   tiny-lm at ctx 512, batch 8 (same tokens/step)      1400   923 s  .003/.003   0.04  +0.04   none
    #   BPE 512, ctx 256, d64, attn-only, 3e-3 cosine       3000   469 s  .006/.005   0.17  +0.09   none
    #   bytes (258), ctx 256, d64, attn-only, 3e-3 cosine   2000   183 s  .008/.007   0.18  +0.06   none
    #   BPE 512, ctx 256, d64, attn-only, init 0.02, 1e-2   2000   204 s  .007/.005   0.16  +0.09   none
    #   bytes, ctx 512, batch 8, d64, attn-only, 3e-3 const 6000  ~920 s  .003/.003   0.32  -0.08   none
    #   BPE 512, ctx 256, d64, attn-only, no LN, 1e-2 const 3500   499 s  .007/.006   0.24  +0.11   none
    # (first row: the full natural-induction run's training, ICL -0.007 beyond a unigram model's; an earlier
    # session measured 27.6 min for it on a busier machine; the issue reports a 900-step attention-only model:
    # <= 0.01 vs 0.006.) None came near the census's 0.3: previous-token heads form slowly (0.04-0.32) and
    # induction never starts; Olsson et al. 2022 see the phase change after billions of training tokens,
    # these runs saw 0.3-2.5e7 tokens (batch 16, weight decay 0.01 where not said). So tiny-lm stays as it is (one model
    # serves natural-induction and fine-tune-circuits) and natural-induction's verdict is INCONCLUSIVE (a budget
    # result, not a refutation).
    "tiny-lm": Preset(
        task="text",
        task_params=dict(vocab_size=4096, length=256),
        model=dict(n_layers=2, n_heads=4, d_model=128, act_fn="gelu_new", normalization_type="LN"),
        training=dict(
            steps=700,
            lr=3e-3,
            warmup_steps=100,
            schedule="cosine",
            min_lr_fraction=0.1,
            weight_decay=0.1,
            batch_size=16,
            eval_every=100,
            eval_batches=2,
            checkpoint_every=250,
            n_log_checkpoints=14,
        ),
        description="GPT-2-shaped 2-layer language model on Shakespeare (byte-level BPE 4096); 9 min on 1 thread "
        "(measured, the other core busy)",
    ),
    "tictactoe": Preset(
        task="tictactoe",
        model=dict(n_layers=2, n_heads=4, d_model=64),
        training=dict(steps=600, lr=3e-3, warmup_steps=50, schedule="cosine", batch_size=64, eval_every=100),
        description="next-move prediction on random legal tic-tac-toe games (legal top-1 moves >= 99%)",
    ),
    "othello6": Preset(
        task="othello",
        task_params=dict(size=6),
        # d_model 64 stopped at 93.2% (3000 steps) and 94.8% (6000); 128 reached 95.4% at 3000 (20 min, 1 thread).
        model=dict(n_layers=4, n_heads=4, d_model=128),
        training=dict(steps=3000, lr=3e-3, warmup_steps=100, schedule="cosine", batch_size=64, eval_every=250),
        description="next-move prediction on random legal 6x6 Othello games (legal top-1 moves >= 95%)",
    ),
}


def from_preset(name: str, *, task_params: dict | None = None, model: dict | None = None, training: dict | None = None):
    """(task, model config, TrainingConfig) of a preset, each with overrides applied."""
    from .config import TrainingConfig

    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {sorted(PRESETS)}")
    preset = PRESETS[name]
    task = make_task(preset.task, **{**preset.task_params, **(task_params or {})})
    model_cfg = task.model_config(**{**preset.model, **(model or {})})
    train_kwargs = {**preset.training, **(training or {})}
    if "warmup_steps" not in (training or {}):  # a shorter run keeps the preset's warm-up inside it
        train_kwargs["warmup_steps"] = min(train_kwargs.get("warmup_steps", 0), train_kwargs.get("steps", 1000))
    return task, model_cfg, TrainingConfig(**train_kwargs)
