"""`train(model, task, TrainingConfig(...))`: AdamW on a task's masked loss, with evaluation,
metrics, checkpoints, resume and a clean stop on Ctrl-C.

A run directory holds `config.json` (model, task, training), `metrics.jsonl`, `checkpoints/` and,
at the end, `final/` (a model `HookedTransformer.load` reads).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..files import atomic_write
from ..model import HookedTransformer
from ..tasks import Task, masked_loss
from .checkpoints import checkpoint_path, list_checkpoints, load_checkpoint, remove_stale_temps, save_checkpoint
from .config import TrainingConfig
from .metrics import MetricFn, MetricsLog, evaluate, run_metric_fns

EVAL_SEED = 1_000_000_007  # eval batches never coincide with training batches


def data_seed(seed: int, step: int) -> int:
    """Seed of the training batch of `step`: a function of (seed, step) only, so resuming is exact."""
    return seed * 1_000_003 + step


@dataclass
class TrainResult:
    model: HookedTransformer
    step: int
    history: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


class _StopFlag:
    """SIGINT sets a flag the loop checks between steps; a second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.stop = False
        self._old: Any = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _prepare_run_dir(run_dir: Path, config: dict[str, Any], resume: bool) -> None:
    config = json.loads(json.dumps(config))  # compare as stored (tuples become lists)
    config_path = run_dir / "config.json"
    if config_path.exists():
        if not resume:
            raise FileExistsError(f"{run_dir} already holds a run: pass resume=True (--resume) or choose another --out")
        saved = json.loads(config_path.read_text())
        if saved != config:
            changed = sorted(k for k in config if saved.get(k) != config[k])
            raise ValueError(f"cannot resume {run_dir}: its config differs in {changed}; use a new run directory")
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(config_path, lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2, sort_keys=True)))


def train(
    model: HookedTransformer,
    task: Task,
    cfg: TrainingConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    metrics: dict[str, MetricFn] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train `model` on `task`. With `out_dir`, write the run directory; `resume=True` continues the
    latest checkpoint there to the same final weights an uninterrupted run reaches."""
    cfg = cfg or TrainingConfig()
    if model.cfg.d_vocab < task.d_vocab or model.cfg.n_ctx < task.seq_len:
        raise ValueError(
            f"model (d_vocab={model.cfg.d_vocab}, n_ctx={model.cfg.n_ctx}) is too small for task {task.name} "
            f"(d_vocab={task.d_vocab}, seq_len={task.seq_len}): build it with task.model_config(...)"
        )
    metrics = metrics or {}
    run_dir = Path(out_dir) if out_dir is not None else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    device = model.device
    counters = {"loss_sum": 0.0, "loss_count": 0}
    step, history, log = 0, [], None
    if run_dir is not None:
        config = {"model": model.cfg.to_dict(), "task": task.to_dict(), "training": cfg.to_dict()}
        _prepare_run_dir(run_dir, config, resume)
        log = MetricsLog(run_dir / "metrics.jsonl")
        found = list_checkpoints(run_dir)
        if resume:
            remove_stale_temps(run_dir)
        if resume and found:
            step, counters = load_checkpoint(found[-1][1], model, optimizer)
            history = log.truncate_after(step)
        elif log.path.exists():
            log.path.unlink()

    eval_batches = [task.generate(cfg.eval_batch_size, EVAL_SEED + i).to(device) for i in range(cfg.eval_batches)]
    eval_steps, ckpt_steps = cfg.eval_steps(), cfg.checkpoint_steps() if run_dir is not None else set()
    tokens_per_step = cfg.batch_size * task.seq_len
    start = time.perf_counter()

    def record(done: int) -> None:
        row = {"step": done, "tokens_seen": done * tokens_per_step, "lr": cfg.lr_at(max(done - 1, 0))}
        row["train_loss"] = counters["loss_sum"] / counters["loss_count"] if counters["loss_count"] else None
        counters.update(loss_sum=0.0, loss_count=0)
        row.update(evaluate(model, eval_batches))
        row.update(run_metric_fns(model, metrics))
        history.append(row)
        if log is not None:
            log.append(row)

    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc=f"train {task.name}", unit="step")
    with _StopFlag() as flag:
        if step == 0 and not history:
            record(0)
            if 0 in ckpt_steps:
                save_checkpoint(run_dir, 0, model, optimizer, counters)
        while step < cfg.steps and not flag.stop:  # a Ctrl-C during the step-0 evaluation stops at step 0
            batch = task.generate(cfg.batch_size, data_seed(cfg.seed, step)).to(device)
            lr = cfg.lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = masked_loss(model(batch.tokens), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            counters["loss_sum"] += loss.item()
            counters["loss_count"] += 1
            if step in eval_steps or step in ckpt_steps:
                record(step)
                bar.set_postfix(loss=f"{history[-1]['eval_loss']:.3f}")
            if step in ckpt_steps:
                save_checkpoint(run_dir, step, model, optimizer, counters)
            bar.update(1)
        interrupted = flag.stop and step < cfg.steps
    bar.close()
    if interrupted and run_dir is not None:
        if step not in ckpt_steps:
            save_checkpoint(run_dir, step, model, optimizer, counters)
        print(f"stopped at step {step}; checkpoint {checkpoint_path(run_dir, step)} written, continue with "
              "resume=True (the same command with --resume)")  # fmt: skip
    if run_dir is not None and not interrupted:
        model.save(run_dir / "final")
    return TrainResult(model, step, history, run_dir, interrupted, time.perf_counter() - start)
