"""`circuitlab info RUN_OR_MODEL`: a model summary (shape, parameters, hook points)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

HELP = "summarise a model: layers, heads, parameters, hook points"  # the line in `circuitlab --help`


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "info",
        help=HELP,
        description="Print a model's shape, parameter counts and hook points. RUN_OR_MODEL: a run "
        "directory, a folder saved by model.save, or a Hugging Face folder.",
    )
    p.add_argument("path", type=Path, metavar="RUN_OR_MODEL")
    p.add_argument("--all-hooks", action="store_true", help="list every hook point (default: one per kind)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def summary(model: Any) -> dict[str, Any]:
    """Shape, parameter counts (total and per top-level part) and hook point names of a model."""
    cfg = model.cfg
    parts: dict[str, int] = {}
    for name, param in model.named_parameters():
        part = name.split(".")[0] if not name.startswith("blocks.") else ".".join(name.split(".")[2:3])
        parts[part] = parts.get(part, 0) + param.numel()
    return {
        "n_layers": cfg.n_layers,
        "n_heads": cfg.n_heads,
        "d_model": cfg.d_model,
        "d_head": cfg.d_head,
        "d_mlp": None if cfg.attn_only else cfg.d_mlp,
        "d_vocab": cfg.d_vocab,
        "n_ctx": cfg.n_ctx,
        "attn_only": cfg.attn_only,
        "normalization_type": cfg.normalization_type,
        "positional_embedding_type": cfg.positional_embedding_type,
        "tokenizer": model.tokenizer is not None,
        "parameters": sum(parts.values()),
        "parameters_by_part": parts,
        "hook_points": [n for n in model.hook_dict if model.silent_hook_reason(n) is None],  # ones that fire
    }


def _kinds(names: list[str]) -> list[tuple[str, int]]:
    """Hook names with the layer index replaced by {i}, each with how many layers have it."""
    counts: dict[str, int] = {}
    for name in names:
        key = re.sub(r"^blocks\.\d+\.", "blocks.{i}.", name)
        counts[key] = counts.get(key, 0) + 1
    return list(counts.items())


def run(args: argparse.Namespace) -> int:
    from ..runs import load_model_or_run

    model, run_ = load_model_or_run(args.path)
    info = summary(model)
    if run_ is not None:
        info["task"] = run_.config["task"]["name"]
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    shape = ", ".join(
        f"{k} {info[k]}" for k in ("n_layers", "n_heads", "d_model", "d_head", "d_mlp", "d_vocab", "n_ctx")
    )
    print(f"model: {shape}")
    print(
        f"attention only: {info['attn_only']}; normalization: {info['normalization_type']}; positions: "
        f"{info['positional_embedding_type']}; tokenizer: {'yes' if info['tokenizer'] else 'no (token ids only)'}"
        + (f"; trained on: {info['task']}" if "task" in info else "")
    )
    print(
        f"parameters: {info['parameters']:,} ("
        + ", ".join(f"{k} {v:,}" for k, v in info["parameters_by_part"].items())
        + ")"
    )
    hooks = info["hook_points"]
    print(f"hook points: {len(hooks)}")
    if args.all_hooks:
        print("\n".join(f"  {h}" for h in hooks))
    else:
        for key, n in _kinds(hooks):
            print(f"  {key}" + (f"  (x{n})" if "{i}" in key else ""))
    return 0
