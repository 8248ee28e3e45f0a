"""Cost of caching every activation, and of importing circuitlab.

Prints, from one run: the time of `run_with_cache` (all hook points) over a plain forward for a
GPT-2-small-shaped model at batch 8 x 64 tokens (target <= 1.15), with and without autograd, and
the import time of circuitlab on top of torch. Run: `.venv/bin/python benchmarks/forward.py`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

import torch

from circuitlab import HookedTransformer, HookedTransformerConfig
from timing import time_calls

GPT2_SMALL = dict(
    n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257, n_ctx=1024, act_fn="gelu_new"
)


IMPORT_PROBE = """
import time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import circuitlab
circuitlab.HookedTransformer  # names load lazily: force the model package in
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def import_seconds(repeats: int = 5) -> tuple[float, float]:
    """Best (torch, circuitlab beyond torch) import times, each in a fresh interpreter."""
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], check=True, capture_output=True, text=True)
        runs.append(tuple(float(x) for x in out.stdout.split()))
    return min(r[0] for r in runs), min(r[1] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--pos", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    model = HookedTransformer(HookedTransformerConfig(**GPT2_SMALL, seed=0, device=args.device))
    tokens = torch.randint(0, GPT2_SMALL["d_vocab"], (args.batch, args.pos), device=args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    _, cache = model.run_with_cache(tokens)
    print(
        f"GPT-2-small shape, batch {args.batch} x {args.pos} tokens on {args.device}, "
        f"{torch.get_num_threads()} threads, "
        f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE')}; "
        f"cache: {len(cache)} activations, {cache.memory_bytes() / 2**20:.0f} MiB"
    )
    del cache

    def plain() -> None:
        model(tokens)
        sync()

    def cached() -> None:
        model.run_with_cache(tokens)
        sync()

    for label, grad in (("no_grad", False), ("autograd", True)):
        with torch.set_grad_enabled(grad):
            t = time_calls({"forward": plain, "run_with_cache": cached}, args.repeats)
        med = {k: statistics.median(v) for k, v in t.items()}
        best = {k: min(v) for k, v in t.items()}
        print(
            f"  {label:9s} median: forward {1e3 * med['forward']:7.1f} ms, run_with_cache "
            f"{1e3 * med['run_with_cache']:7.1f} ms, ratio {med['run_with_cache'] / med['forward']:.3f}"
            f" | best-of-{args.repeats} ratio {best['run_with_cache'] / best['forward']:.3f} (target <= 1.15)"
        )

    torch_s, lab_s = import_seconds()
    print(f"import: torch {torch_s:.2f} s; circuitlab on top of torch {1e3 * lab_s:.0f} ms")


if __name__ == "__main__":
    main()
