"""Batched activation patching against a naive one-forward-per-cell loop, on a GPT-2-small-shaped model.

Random weights, clean / corrupted batches of 8 x 20 tokens (the corruption changes two positions), metric
the logit difference at the last position. Two sweeps: resid_pre by layer x position (12 x 20 cells)
and head outputs (`hook_z`, all positions; 144 heads). Prints, from one run, each side's time, the
speed-up and the largest difference between the two results (target: >= 10x, <= 1e-4).

Run: `PYTHONPATH=src .venv/bin/python benchmarks/patching.py [--threads 1] [--naive-fraction 1.0]`.
`--naive-fraction f < 1` times the naive loop on a random fraction of the cells and extrapolates its
time (the difference is then over those cells only).

Measured (2 shared CPU cores, --threads 1, commit of this note): resid_pre 109.1 s vs 261.9 s (2.40x),
heads 79.8 s vs 158.2 s (1.98x), both 188.9 s vs 420.2 s (2.22x), max |difference| 0.00e+00. Again on a
quiet machine, 2 threads, --naive-fraction 0.3: resid_pre 2.20x, heads 3.29x, both 72.0 s vs 183.7 s (2.55x).
The 10x target is not met on CPU: both sides are compute-bound, and batching saves only the shared prefix (about
half the blocks on average) and the unembedding of positions the metric does not read.
"""

from __future__ import annotations

import argparse
import time

import torch

from circuitlab import HookedTransformer, HookedTransformerConfig
from circuitlab.analysis import logit_diff, patch_head_out_all_pos, patch_resid_pre
from circuitlab.model.names import get_act_name

GPT2_SMALL = dict(
    n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257, n_ctx=1024, act_fn="gelu_new"
)


def naive_sweep(model, clean, corrupted, metric, act, cells):
    """Denoising, one forward per cell: run the corrupted tokens with one cell of `act` from the clean run."""
    names = sorted({get_act_name(act, layer) for layer, _ in cells})
    _, clean_cache = model.run_with_cache(clean, names_filter=names)
    values = []
    for layer, index in cells:
        name = get_act_name(act, layer)

        def hook(x, hook, index=index, name=name):
            x = x.clone()
            x[index] = clean_cache[name][index]
            return x

        values.append(float(metric(model.run_with_hooks(corrupted, fwd_hooks=[(name, hook)]))))
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--pos", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--naive-fraction", type=float, default=1.0, help="fraction of cells the naive loop runs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = HookedTransformer(HookedTransformerConfig(**GPT2_SMALL, seed=args.seed, device=args.device)).eval()
    gen = torch.Generator().manual_seed(args.seed)
    clean = torch.randint(0, model.cfg.d_vocab, (args.batch, args.pos), generator=gen)
    corrupted = clean.clone()
    for p in (args.pos // 4, args.pos // 2):  # two corrupted positions, as a name swap would
        corrupted[:, p] = torch.randint(0, model.cfg.d_vocab, (args.batch,), generator=gen)
    answer, distractor = torch.randint(0, model.cfg.d_vocab, (2, args.batch), generator=gen)
    metric = logit_diff(answer, distractor)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    print(
        f"GPT-2-small-shaped model (random weights, float32, {args.device}, {torch.get_num_threads()} threads), "
        f"{args.batch} x {args.pos} tokens"
    )

    sweeps = {
        "resid_pre layer x pos": (
            patch_resid_pre,
            "resid_pre",
            [(l, (slice(None), p)) for l in range(n_layers) for p in range(args.pos)],
            lambda grid, l, i: grid[l, i[1]],
        ),
        "head outputs (z, all pos)": (
            patch_head_out_all_pos,
            "z",
            [(l, (slice(None), slice(None), h)) for l in range(n_layers) for h in range(n_heads)],
            lambda grid, l, i: grid[l, i[2]],
        ),
    }
    totals = [0.0, 0.0]
    worst = 0.0
    with torch.no_grad():
        for label, (fn, act, cells, read) in sweeps.items():
            start = time.perf_counter()
            grid = fn(model, clean, corrupted, metric, progress=False)
            batched_s = time.perf_counter() - start
            n_run = max(1, round(args.naive_fraction * len(cells)))
            chosen = sorted(torch.randperm(len(cells), generator=gen)[:n_run].tolist())
            start = time.perf_counter()
            naive = naive_sweep(model, clean, corrupted, metric, act, [cells[i] for i in chosen])
            naive_s = (time.perf_counter() - start) * len(cells) / n_run
            diff = max(abs(float(read(grid, *cells[i])) - v) for i, v in zip(chosen, naive, strict=True))
            worst = max(worst, diff)
            totals[0] += batched_s
            totals[1] += naive_s
            note = "" if n_run == len(cells) else f" (extrapolated from {n_run} of {len(cells)} cells)"
            print(
                f"{label:27s} {len(cells):4d} cells: batched {batched_s:7.2f} s, naive {naive_s:7.2f} s{note}, "
                f"speed-up {naive_s / batched_s:5.2f}x, max |difference| {diff:.2e} "
                f"(patched metric ranges over [{float(grid.min()):.3f}, {float(grid.max()):.3f}])"
            )
    print(
        f"{'both sweeps':27s}            batched {totals[0]:7.2f} s, naive {totals[1]:7.2f} s, "
        f"speed-up {totals[1] / totals[0]:5.2f}x (target >= 10x), max |difference| {worst:.2e} (target <= 1e-4)"
    )


if __name__ == "__main__":
    main()
