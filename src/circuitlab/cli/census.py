"""`circuitlab census RUN_OR_MODEL`: name every head's roles, with the scores and ablation effects."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "census",
        help="name every head's roles with evidence",
        description="Score every head (previous-token, duplicate, induction, copying, ...) against null "
        "baselines, name roles by fixed thresholds and mean-ablate each head. RUN_OR_MODEL: a run directory "
        "(its task is used for the ablation), a folder saved by model.save, or a Hugging Face folder.",
    )
    p.add_argument("path", type=Path, metavar="RUN_OR_MODEL")
    p.add_argument("--csv", type=Path, help="also write the census as CSV")
    p.add_argument("--json", type=Path, help="also write the census as JSON")
    p.add_argument("--no-ablation", action="store_true", help="skip the mean-ablation column (faster)")
    p.add_argument("--batch", type=int, default=32, help="probe sequences per score (default 32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--bos",
        type=int,
        help="BOS token id of the probes; -1 for none (default: the model's: tokenizer, then config, else 0)",
    )
    p.add_argument("--threads", type=int, help="torch CPU threads")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..analysis import head_census
    from ..analysis.heads import model_bos_id
    from ..runs import load_model_or_run

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.batch < 1:
        raise ValueError(f"--batch {args.batch} is invalid: expected a positive integer")
    model, run_ = load_model_or_run(args.path)
    task = run_.task() if run_ is not None else None
    bos = model_bos_id(model) if args.bos is None else (None if args.bos < 0 else args.bos)
    if bos is not None and bos >= model.cfg.d_vocab:
        raise ValueError(f"--bos {bos} is outside the vocabulary (d_vocab={model.cfg.d_vocab}); use -1 for none")
    census = head_census(model, task=task, batch=args.batch, seed=args.seed, bos=bos, ablate=not args.no_ablation)
    print(census.table())
    if census.clean_loss is not None:
        where = f"task {task.name}" if task is not None else "repeated random tokens"
        print(f"clean loss {census.clean_loss:.4f} on {where}; 'ablation dloss' = loss increase, head mean-ablated")
    if args.csv:
        census.to_csv(args.csv)
        print(f"CSV written to {args.csv}")
    if args.json:
        census.to_json(args.json)
        print(f"JSON written to {args.json}")
    return 0
