"""`circuitlab train TASK_OR_PRESET [switches]`: train a model and write a run directory."""

from __future__ import annotations

import argparse
import difflib
import json
import shutil
from pathlib import Path
from typing import Any

# The task and training modules (and so torch) are imported when a command needs them, so that
# `circuitlab --help` answers at once.


def _preset_for(name: str) -> str:
    from ..tasks import TASKS
    from ..training import PRESETS

    if name in PRESETS:
        return name
    for preset_name, preset in PRESETS.items():
        if preset.task == name:
            return preset_name
    close = difflib.get_close_matches(name, [*PRESETS, *TASKS], n=2)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ValueError(f"unknown task or preset {name!r}; {hint}tasks: {sorted(TASKS)}; presets: {sorted(PRESETS)}")


def _key_value(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


HELP = "train a model on a task"  # the line in `circuitlab --help`


def add_parser(sub: Any) -> None:
    from ..tasks import TASKS
    from ..training import PRESETS

    names = sorted({*PRESETS, *TASKS})
    p = sub.add_parser(
        "train",
        help=HELP,
        description="Train a model on a task (or a named preset) and write a run directory: config.json, "
        "metrics.jsonl, checkpoints/ and final/. Unset switches take the preset's values.",
        epilog="presets: " + "; ".join(f"{k}: {v.description}" for k, v in PRESETS.items()),
    )
    p.add_argument("task", metavar="TASK", help=f"one of {names}")
    p.add_argument("--preset", choices=sorted(PRESETS), help="start from this preset (default: the task's)")
    m = p.add_argument_group("model")
    m.add_argument("--n-layers", type=int)
    m.add_argument("--n-heads", type=int)
    m.add_argument("--d-model", type=int)
    m.add_argument("--d-head", type=int)
    m.add_argument("--d-mlp", type=int)
    m.add_argument("--act-fn", choices=["relu", "gelu", "gelu_new", "gelu_fast", "silu", "solu_ln"])
    m.add_argument("--attn-only", action=argparse.BooleanOptionalAction, default=None, help="no MLPs")
    m.add_argument("--normalization", choices=["LN", "LNPre", "RMS", "RMSPre", "none"])
    m.add_argument("--no-pos-embed", action="store_true", help="no positional embedding")
    m.add_argument("--rotary", action="store_true", help="rotary positional embedding")
    m.add_argument("--no-causal-mask", action="store_true", help="bidirectional attention")
    m.add_argument("--no-attn-scale", action="store_true", help="no 1/sqrt(d_head) in attention")
    m.add_argument("--model-seed", type=int, default=0, help="initialisation seed")
    t = p.add_argument_group("training")
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--weight-decay", type=float)
    t.add_argument("--warmup-steps", type=int)
    t.add_argument("--schedule", choices=["constant", "cosine"])
    t.add_argument("--grad-clip", type=float)
    t.add_argument("--eval-every", type=int)
    t.add_argument("--checkpoint-every", type=int)
    t.add_argument("--log-checkpoints", type=int, dest="n_log_checkpoints", help="log-spaced checkpoints")
    t.add_argument("--seed", type=int, help="data seed")
    p.add_argument("--task-param", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="a task parameter, e.g. --task-param length=64 (repeatable)")  # fmt: skip
    p.add_argument("--out", type=Path, help="run directory (default runs/TASK)")
    p.add_argument("--resume", action="store_true", help="continue the latest checkpoint in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Before anything is printed or trained: a run already in `out` needs --resume or --overwrite (which
    removes it, only if it is a circuitlab run directory)."""
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other: continue the run in --out, or replace it")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: give a folder for the run")
    config = out / "config.json"
    if resume or not config.exists():
        return
    if not overwrite:
        raise ValueError(
            f"{out} already holds a run: pass --resume to continue it, --overwrite to replace it, or choose "
            "another --out"
        )
    try:
        is_run = {"model", "task", "training"} <= set(json.loads(config.read_text()))
    except (ValueError, OSError, TypeError):
        is_run = False
    if not is_run:
        raise ValueError(f"--overwrite: {out} does not look like a circuitlab run directory; remove it yourself")
    shutil.rmtree(out)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..model import HookedTransformer
    from ..tasks import GameTask
    from ..training import PRESETS, from_preset, train

    if args.threads:
        torch.set_num_threads(args.threads)
    preset = _preset_for(args.task)
    if args.preset:
        if PRESETS[args.preset].task != PRESETS[preset].task:
            raise ValueError(f"preset {args.preset!r} trains {PRESETS[args.preset].task!r}, not {args.task!r}")
        preset = args.preset
    model_over = {
        k: v
        for k, v in dict(
            n_layers=args.n_layers, n_heads=args.n_heads, d_model=args.d_model, d_head=args.d_head, d_mlp=args.d_mlp,
            act_fn=args.act_fn, attn_only=args.attn_only, seed=args.model_seed,
        ).items()
        if v is not None
    }  # fmt: skip
    if args.d_model is not None and args.n_heads is None and args.d_head is None:
        model_over["d_head"] = None  # let d_head follow the new d_model
    if args.normalization:
        model_over["normalization_type"] = None if args.normalization == "none" else args.normalization
    if args.no_pos_embed and args.rotary:
        raise ValueError("--no-pos-embed and --rotary contradict each other; pick one")
    if args.no_pos_embed:
        model_over["positional_embedding_type"] = "none"
    if args.rotary:
        model_over["positional_embedding_type"] = "rotary"
    if args.no_causal_mask:
        model_over["causal"] = False
    if args.no_attn_scale:
        model_over["attn_scale"] = 1.0
    train_keys = ("steps", "batch_size", "lr", "weight_decay", "warmup_steps", "schedule", "grad_clip", "eval_every",
                  "checkpoint_every", "n_log_checkpoints", "seed")  # fmt: skip
    train_over = {k: getattr(args, k) for k in train_keys if getattr(args, k) is not None}
    task, model_cfg, train_cfg = from_preset(
        preset, task_params=dict(args.task_param), model=model_over, training=train_over
    )
    out = args.out or Path("runs") / args.task
    _check_out(out, args.resume, args.overwrite)
    model = HookedTransformer(model_cfg)
    print(
        f"training {model_cfg.n_layers}-layer model ({sum(p.numel() for p in model.parameters()):,} parameters) "
        f"on {task.name} for {train_cfg.steps} steps -> {out}"
    )
    text = task.name == "text"
    metrics = None
    if text:  # real English: exportable as GPT-2, held-out loss and ICL score at every evaluation
        from ..text.lm import heldout_metrics, prepare_text_model

        prepare_text_model(model)
        metrics = heldout_metrics(task)
    elif isinstance(task, GameTask):  # games log the top-1 legal move rate on held-out games
        from ..games import register_legal_move_rate

        metrics = register_legal_move_rate(task)
    result = train(
        model, task, train_cfg, out_dir=out, resume=args.resume, metrics=metrics, progress=not args.no_progress
    )
    if text and not result.interrupted:
        from ..text.lm import finish_text_run, summary

        print(summary(finish_text_run(result.model, task, out)))
    final = result.final
    loss = final.get("eval_loss", float("nan"))
    legal = f", legal top-1 moves {final['legal_move_rate']:.2%}" if "legal_move_rate" in final else ""
    print(f"step {result.step}: eval loss {loss:.4f}{legal} in {result.seconds:.1f} s; run in {out}")
    return 130 if result.interrupted else 0
