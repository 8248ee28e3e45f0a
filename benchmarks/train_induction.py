"""Training speed on the default induction preset (2-layer attention-only, repeated random tokens).

Prints, from one run on 2 CPU threads: the wall time from start until the eval loss on the repeated
tokens drops below 0.1 nats, and circuitlab's `train` steps per second against a plain PyTorch loop
doing the same work (same model, batches, AdamW, gradient clipping), with and without a run
directory. Targets: under 30 s to induction, at least 0.9 of the plain loop's speed.
Run: `.venv/bin/python benchmarks/train_induction.py`.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from circuitlab import HookedTransformer
from circuitlab.tasks import masked_loss
from circuitlab.training import data_seed, from_preset, train


def plain_loop(model: HookedTransformer, task, cfg, steps: int) -> float:
    """The same optimisation written as a bare PyTorch loop; returns seconds."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    start = time.perf_counter()
    for step in range(steps):
        batch = task.generate(cfg.batch_size, data_seed(cfg.seed, step))
        for group in opt.param_groups:
            group["lr"] = cfg.lr_at(step)
        loss = masked_loss(model(batch.tokens), batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        loss.item()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--speed-steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    # 1. Wall time to an induction circuit, with the preset's own settings (evaluating every 25 steps).
    task, model_cfg, cfg = from_preset("induction", training=dict(eval_every=25))
    start = time.perf_counter()
    clock = {"seconds": lambda m: time.perf_counter() - start}
    result = train(HookedTransformer(model_cfg), task, cfg, metrics=clock, progress=False)
    hit = next((r for r in result.history if r["eval_loss"] < 0.1), None)
    if hit is None:
        print(f"induction: eval loss never below 0.1 in {cfg.steps} steps (final {result.final['eval_loss']:.3f})")
    else:
        print(f"induction: eval loss {hit['eval_loss']:.3f} < 0.1 at step {hit['step']}, "
              f"{hit['seconds']:.1f} s after start (target < 30 s), {args.threads} threads")  # fmt: skip

    # 2. Steps per second: train() vs a plain loop, same steps, interleaved twice.
    n = args.speed_steps
    _, _, speed_cfg = from_preset("induction", training=dict(steps=n))
    times: dict[str, list[float]] = {"plain loop": [], "train()": [], "train(out_dir)": []}
    for _ in range(2):
        times["plain loop"].append(plain_loop(HookedTransformer(model_cfg), task, speed_cfg, n))
        times["train()"].append(train(HookedTransformer(model_cfg), task, speed_cfg, progress=False).seconds)
        with tempfile.TemporaryDirectory() as tmp:
            r = train(HookedTransformer(model_cfg), task, speed_cfg, out_dir=tmp, progress=False)
            times["train(out_dir)"].append(r.seconds)
    best = {k: min(v) for k, v in times.items()}
    for name, seconds in best.items():
        print(f"  {name:15s} {n / seconds:6.1f} steps/s   ratio to plain loop {best['plain loop'] / seconds:.3f}")
    n_ckpt = len(speed_cfg.checkpoint_steps())
    print(f"(train() evaluates every {speed_cfg.eval_every} steps on {speed_cfg.eval_batches} batches; "
          f"out_dir adds {n_ckpt} checkpoints and metrics.jsonl; target ratio >= 0.9)")  # fmt: skip


if __name__ == "__main__":
    main()
