"""`fine-tune-circuits`: what fine-tuning on a new task does to the circuits a language model already has.

Any model folder `HookedTransformer.from_pretrained` reads (our tiny-lm's `hf/`, or GPT-2 small) is
fine-tuned on `most_frequent` and on a second task (default `repeated_tokens`). At every fine-tuning
checkpoint (log-spaced) the head census runs: roles, every score with its baseline, and the loss increase
when the head is mean-ablated on the fine-tuning task; and the loss on held-out English measures
forgetting. Each head then gets a fate by comparing its roles at the start and at the end: kept (same
roles), changed, died (had roles, has none), born (had none, has some) or none.

`fine_tune_circuits(model_dir, out_dir)` is the entry point for any model; the registered study uses
`$CIRCUITLAB_MODEL` (default `runs/text/hf`, trained with the tiny-lm preset when absent), and quick mode
a small model it trains on a corpus slice in seconds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..analysis import head_census
from ..files import atomic_write_text
from ..model import HookedTransformer
from ..tasks import Task, make_task
from ..text.baselines import lm_loss
from ..text.task import lm_batch, tokenized_windows
from ..training import MetricsLog, TrainingConfig, list_checkpoints, load_checkpoint, train
from ..viz.page import Page
from .base import Check, Study, StudyResult, phase, progress_enabled, register

MODEL_ENV = "CIRCUITLAB_MODEL"
DEFAULT_MODEL = Path("runs/text/hf")
TASKS = ("most_frequent", "repeated_tokens")
SCORES = ("previous_token", "duplicate_token", "induction", "first_token", "copying_eigen")
FATES = ("kept", "changed", "died", "born", "none")
CLAIM = (
    "Fine-tuning a language model on a narrow synthetic task reshapes its existing circuits: the per-checkpoint "
    "head census shows which heads keep their roles, which change and which die, while the task is learned and "
    "the loss on held-out English shows what is forgotten."
)
LEARNED_RATIO = 0.9  # fixed in advance: the task loss must fall below 90% of its value before fine-tuning
# "Reshapes its existing circuits", against a null of random heads: the heads that had a role before
# fine-tuning change their scores (sum over SCORES of |after - before|) more than random head sets of the
# same size. Measured: the fraction of random sets whose mean change is below the role heads' (a percentile
# rank; 0.5 = no different from random). >= 0.8: the role heads sit in the top fifth of the null, fixed
# before any run. Preconditions (INCONCLUSIVE when they fail): the task was learned, the census was recorded
# at every checkpoint, and at least one head had a role to reshape.
MIN_RESHAPE_RANK = 0.8
NULL_DRAWS, NULL_SEED = 2000, 0


def score_change(before: dict[str, Any], after: dict[str, Any]) -> float:
    """Total absolute change of one head's census scores."""
    return sum(abs(after["scores"][k] - before["scores"][k]) for k in SCORES)


def reshape_rank(first: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    """The role heads' mean score change and its percentile rank among random head sets of the same size."""
    heads = sorted(first)
    change = torch.tensor([score_change(first[h], last[h]) for h in heads])  # [head]
    roles = torch.tensor([bool(first[h]["roles"]) for h in heads])
    k = int(roles.sum())
    out = {"role_heads": k, "other_heads": len(heads) - k, "random_change": float(change.mean())}
    if k == 0 or k == len(heads):  # nothing to reshape, or no head left for the null
        return {**out, "role_change": float("nan"), "rank": float("nan")}
    gen = torch.Generator().manual_seed(NULL_SEED)
    picks = torch.rand(NULL_DRAWS, len(heads), generator=gen).argsort(1)[:, :k]  # [draw, k] random head sets
    null = change[picks].mean(1)  # [draw]
    observed = float(change[roles].mean())
    rank = float((null < observed).float().mean() + 0.5 * (null == observed).float().mean())
    return {**out, "role_change": observed, "random_change": float(null.mean()), "rank": rank}


def fine_tune_task(name: str, model: HookedTransformer, bos: int, **params: Any) -> Task:
    """The task sized for the model: token ids within its vocabulary, sequences within its context."""
    defaults: dict[str, dict[str, Any]] = {
        "most_frequent": dict(vocab=min(model.cfg.d_vocab, 103), length=min(60, model.cfg.n_ctx), first_token=3),
        "repeated_tokens": dict(vocab=min(model.cfg.d_vocab, 1000), length=min(48, model.cfg.n_ctx), bos=bos),
    }
    return make_task(name, **{**defaults.get(name, {}), **params})


def head_fate(start: list[str], end: list[str]) -> str:
    if not start and not end:
        return "none"
    if set(start) == set(end):
        return "kept"
    if not end:
        return "died"
    return "born" if not start else "changed"


@torch.no_grad()
def census_row(model: HookedTransformer, task: Task, bos: int, batch: int) -> dict[str, Any]:
    census = head_census(model, task=task, batch=batch, bos=bos)
    return {
        r.label: {
            "roles": r.roles,
            "scores": {k: r.scores[k] for k in SCORES},
            "baselines": {k: r.baselines[k] for k in SCORES},
            "ablation": r.ablation_loss_increase,
        }
        for r in census.rows
    }


def fine_tune_one(
    model_dir: Path, task_name: str, out: Path, training: TrainingConfig, text: torch.Tensor | None,
    census_batch: int, task_params: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Fine-tune a fresh copy of the model on one task; the census and held-out loss at every checkpoint."""
    model = HookedTransformer.from_pretrained(model_dir)
    tok = model.tokenizer
    bos = (tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id) if tok is not None else 0
    task = fine_tune_task(task_name, model, bos if bos is not None else 0, **(task_params or {}))
    run_dir = out / task_name / "run"
    phase(f"fine-tune-circuits: fine-tuning on {task_name}")
    result = train(model, task, training, out_dir=run_dir, progress=progress_enabled())
    losses = {row["step"]: row["eval_loss"] for row in MetricsLog(run_dir / "metrics.jsonl").read()}
    checkpoints = []
    for step, path in list_checkpoints(run_dir):
        load_checkpoint(path, model)
        row = {"step": step, "task_loss": losses.get(step), "heads": census_row(model, task, bos or 0, census_batch)}
        row["heldout_loss"] = lm_loss(model, lm_batch(text)).loss if text is not None else None
        checkpoints.append(row)
    first, last = checkpoints[0]["heads"], checkpoints[-1]["heads"]
    fates = {
        head: {
            "fate": head_fate(first[head]["roles"], last[head]["roles"]),
            "kept": sorted(set(first[head]["roles"]) & set(last[head]["roles"])),
            "lost": sorted(set(first[head]["roles"]) - set(last[head]["roles"])),
            "gained": sorted(set(last[head]["roles"]) - set(first[head]["roles"])),
        }
        for head in first
    }
    trajectory = {
        "model": str(model_dir),
        "task": task.to_dict(),
        "training": training.to_dict(),
        "checkpoint_steps": [s for s, _ in list_checkpoints(run_dir)],
        "checkpoints": checkpoints,
        "fates": fates,
        "seconds": result.seconds,
    }
    atomic_write_text(out / task_name / "trajectory.json", json.dumps(trajectory, indent=2) + "\n")
    return trajectory


def trajectory_complete(trajectory: dict[str, Any]) -> float:
    """Fraction of written checkpoints recorded with every head, every score and an ablation value."""
    recorded = {c["step"]: c for c in trajectory["checkpoints"]}
    heads = set(trajectory["checkpoints"][0]["heads"])
    ok = 0
    for step in trajectory["checkpoint_steps"]:
        row = recorded.get(step)
        ok += bool(row) and set(row["heads"]) == heads and row["task_loss"] is not None and all(
            set(h["scores"]) == set(SCORES) and h["ablation"] is not None for h in row["heads"].values()
        )  # fmt: skip
    return ok / max(1, len(trajectory["checkpoint_steps"]))


def _head_figure(trajectory: dict[str, Any], head: str) -> Any:
    import plotly.graph_objects as go

    steps = [max(c["step"], 1) for c in trajectory["checkpoints"]]
    fig = go.Figure()
    for score in SCORES:
        fig.add_trace(go.Scatter(x=steps, y=[c["heads"][head]["scores"][score] for c in trajectory["checkpoints"]],
                                 name=score))  # fmt: skip
    fig.update_layout(height=260, margin=dict(t=30, b=30), title=head, xaxis_type="log", xaxis_title="step")
    return fig


def fine_tune_circuits(
    model_dir: str | Path,
    out_dir: str | Path,
    tasks: tuple[str, ...] = TASKS,
    steps: int = 300,
    lr: float = 3e-4,
    batch_size: int = 16,
    n_checkpoints: int = 8,
    census_batch: int = 16,
    heldout_windows: int = 32,
    task_params: dict[str, dict[str, Any]] | None = None,
) -> StudyResult:
    """Fine-tune the model in `model_dir` on each task; trajectories in `out_dir/<task>/trajectory.json`."""
    model_dir, out = Path(model_dir), Path(out_dir)
    probe = HookedTransformer.from_pretrained(model_dir)
    text = None
    if probe.tokenizer is not None:
        bos = probe.tokenizer.bos_token_id if probe.tokenizer.bos_token_id is not None else 0
        text = tokenized_windows(probe.tokenizer, "heldout", min(256, probe.cfg.n_ctx), heldout_windows, bos)
    training = TrainingConfig(steps=steps, lr=lr, batch_size=batch_size, eval_every=max(1, steps // 4),
                              eval_batches=2, n_log_checkpoints=n_checkpoints)  # fmt: skip
    results = {name: fine_tune_one(model_dir, name, out, training, text, census_batch, (task_params or {}).get(name))
               for name in tasks}  # fmt: skip

    checks, measurements = [], {"model": str(model_dir), "tasks": {}}
    page = Page("fine-tune-circuits")
    page.text(f"Model: {model_dir}. {steps} fine-tuning steps per task at lr {lr}, batch {batch_size}.")
    for name, traj in results.items():
        first, last = traj["checkpoints"][0], traj["checkpoints"][-1]
        counts = {fate: sum(f["fate"] == fate for f in traj["fates"].values()) for fate in FATES}
        forgetting = None
        if first["heldout_loss"] is not None:
            forgetting = last["heldout_loss"] - first["heldout_loss"]
        measurements["tasks"][name] = {
            "task_loss_before": first["task_loss"],
            "task_loss_after": last["task_loss"],
            "heldout_loss_before": first["heldout_loss"],
            "heldout_loss_after": last["heldout_loss"],
            "forgetting": forgetting,
            "fate_counts": counts,
            "fates": traj["fates"],
            "checkpoints": traj["checkpoint_steps"],
        }
        reshape = reshape_rank(first["heads"], last["heads"])
        measurements["tasks"][name]["reshape"] = reshape
        checks += [
            Check(f"{name}: learned", last["task_loss"] / first["task_loss"], "<", LEARNED_RATIO,
                  "task loss after / before fine-tuning", precondition=True),
            Check(f"{name}: trajectory complete", trajectory_complete(traj), ">=", 1.0,
                  "fraction of checkpoints with the full census recorded", precondition=True),
            Check(f"{name}: heads with and without a role before", min(reshape["role_heads"], reshape["other_heads"]),
                  ">=", 1, "fewer of: heads with a census role before fine-tuning (circuits to reshape), heads "
                  "without (the null)", precondition=True),
            Check(f"{name}: role heads reshaped", reshape["rank"] if reshape["rank"] == reshape["rank"] else 0.0, ">=",
                  MIN_RESHAPE_RANK, "percentile of the role heads' score change among random head sets"),
        ]  # fmt: skip
        page.heading(f"Fine-tuned on {name}")
        page.table([{
            "task loss": f"{first['task_loss']:.3f} -> {last['task_loss']:.3f}",
            "held-out English loss": "n/a (no tokenizer)" if forgetting is None
            else f"{first['heldout_loss']:.3f} -> {last['heldout_loss']:.3f} ({forgetting:+.3f})",
            **counts,
        }])  # fmt: skip
        page.table([
            {"head": head, "fate": f["fate"], "roles before": ", ".join(first["heads"][head]["roles"]) or "-",
             "roles after": ", ".join(last["heads"][head]["roles"]) or "-",
             "ablation before": first["heads"][head]["ablation"], "ablation after": last["heads"][head]["ablation"]}
            for head, f in traj["fates"].items()
        ])  # fmt: skip
        import plotly.graph_objects as go

        steps_axis = [max(c["step"], 1) for c in traj["checkpoints"]]
        losses = go.Figure(go.Scatter(x=steps_axis, y=[c["task_loss"] for c in traj["checkpoints"]], name="task"))
        if forgetting is not None:
            losses.add_trace(go.Scatter(x=steps_axis, y=[c["heldout_loss"] for c in traj["checkpoints"]],
                                        name="held-out English"))  # fmt: skip
        losses.update_layout(xaxis_type="log", xaxis_title="step", yaxis_title="loss (nats)")
        page.figure(losses, f"{name}: task loss and held-out English loss (forgetting) over fine-tuning")
        for head in traj["fates"]:
            page.figure(_head_figure(traj, head), f"{name}: {head} ({traj['fates'][head]['fate']})")
    return StudyResult(checks, measurements, page)


def _run(out: Path, seeds: list[int], quick: bool) -> StudyResult:
    from ..text.lm import quick_text_run

    if quick:
        model_dir = quick_text_run(seed=seeds[0]) / "hf"
        return fine_tune_circuits(model_dir, out, steps=12, lr=1e-3, n_checkpoints=3, census_batch=4,
                                  heldout_windows=8)  # fmt: skip
    model_dir = Path(os.environ.get(MODEL_ENV) or DEFAULT_MODEL)
    if not (model_dir / "config.json").is_file():
        if os.environ.get(MODEL_ENV):
            raise FileNotFoundError(f"{MODEL_ENV}={model_dir} holds no model (config.json)")
        from ..text.lm import train_text_preset

        train_text_preset(model_dir.parent, "tiny-lm")
    return fine_tune_circuits(model_dir, out)


register(
    Study(
        "fine-tune-circuits",
        CLAIM,
        _run,
        source="fine-tuning's effect on circuits (a circuitlab question; no single source)",
        measured_s=(8, 172),  # full: on an already trained tiny-lm (training it first adds ~530 s)
    )
)
