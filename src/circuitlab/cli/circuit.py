"""`circuitlab circuit RUN --task TASK [--method eap-ig] --out DIR`: discover the circuit of a model on a
task (EAP, EAP-IG or ACDC) and write circuit.json and circuit.html."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "circuit",
        help="discover a circuit (EAP / EAP-IG / ACDC) and its faithfulness",
        description="Score every edge of the model's graph (input, heads with separate q/k/v inputs, MLPs, "
        "logits) on a task, with corrupted-run ablation, and keep the smallest top-scoring circuit reaching "
        "--level faithfulness (ACDC: its pruned graph). repeated_tokens compares with fresh unrepeated "
        "sequences under the logit difference of the induction targets and scores the found edges against "
        "the induction circuit; other tasks compare two batches under the targets' log-probability.",
    )
    p.add_argument("path", type=Path, metavar="RUN_OR_MODEL", help="run directory or saved model folder")
    p.add_argument("--task", help="task name (default: the run's task); a run's own task keeps its parameters")
    p.add_argument("--method", choices=["eap", "eap-ig", "acdc"], default="eap-ig")
    p.add_argument("--steps", type=int, default=20, help="EAP-IG integration steps (default 20)")
    p.add_argument("--threshold", type=float, default=0.01, help="ACDC threshold, a fraction of the metric range")
    p.add_argument("--level", type=float, default=0.9, help="faithfulness the kept circuit must reach (0.9)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("circuit"), help="output folder (default ./circuit)")
    p.add_argument("--threads", type=int, help="torch CPU threads")


def _task(run_: Any, name: str | None, model: Any) -> Any:
    from ..tasks import make_task

    own = run_.task() if run_ is not None else None
    if name is None:
        if own is None:
            raise ValueError("this model folder has no task: pass --task NAME (e.g. --task repeated_tokens)")
        return own
    task = own if own is not None and own.name == name else make_task(name)
    if task.d_vocab > model.cfg.d_vocab or task.seq_len > model.cfg.n_ctx:
        raise ValueError(
            f"task {name!r} needs d_vocab >= {task.d_vocab} and n_ctx >= {task.seq_len}; the model has "
            f"{model.cfg.d_vocab} and {model.cfg.n_ctx} (train on this task, or use the run's own task)"
        )
    return task


def run(args: argparse.Namespace) -> int:
    import torch

    from .. import viz
    from ..analysis.discovery import Ablation, discover
    from ..analysis.discovery.problems import task_problem
    from ..files import atomic_write_text
    from ..runs import load_model_or_run

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.batch < 1:
        raise ValueError(f"--batch {args.batch} is invalid: expected a positive integer")
    if not 0 < args.level <= 1:
        raise ValueError(f"--level {args.level} is invalid: expected a faithfulness in (0, 1]")
    model, run_ = load_model_or_run(args.path)
    problem = task_problem(model, _task(run_, args.task, model), args.batch, args.seed)
    exp = Ablation(model, problem.clean, problem.corrupted, problem.metric)
    found = discover(problem, args.method, args.level, args.steps, args.threshold, experiment=exp)
    circuit, faithfulness, curve = found.circuit, found.faithfulness, found.curve
    result = {
        "model": str(args.path),
        "task": problem.name,
        "metric_clean": exp.clean_metric,
        "metric_all_ablated": exp.ablated_metric,
        "level": args.level,
        **found.to_dict(),
    }
    if problem.true_edges:
        result["known_circuit"] = {
            "description": problem.description,
            "edges": problem.true_edges,
            "roc_auc": found.roc_auc,
            "found": sorted(set(problem.true_edges) & set(circuit.edges)),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "circuit.json", json.dumps(result, indent=2))
    title = (
        f"{args.method} on {problem.name}: {len(circuit)} of {exp.graph.n_edges} edges, faithfulness {faithfulness:.3f}"
    )
    page = viz.Page(f"circuit: {args.path.name}").heading(title)
    page.figure(viz.circuit_graph(circuit, title=title))
    page.table([{"k": k, "faithfulness": round(f, 4)} for k, f in zip(curve.k, curve.faithfulness, strict=True)])
    page.save(args.out / "circuit.html")
    print(title)
    for edge in circuit.edges[:20]:
        print(f"  {edge}")
    if "known_circuit" in result:
        known = result["known_circuit"]
        print(
            f"known circuit: {known['description']}; ROC AUC {known['roc_auc']:.3f}, "
            f"{len(known['found'])} of {len(known['edges'])} of its edges kept"
        )
    print(f"wrote {args.out / 'circuit.json'} and {args.out / 'circuit.html'}")
    return 0
