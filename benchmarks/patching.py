"""Exact activation patching against a naive one-forward-per-cell loop and TransformerLens 2.x, side by side.

A GPT-2-small-shaped model (random weights), clean / corrupted batches of 8 x 20 tokens (the corruption
changes two positions), metric the logit difference at the last position. Two sweeps: resid_pre by layer x
position (12 x 20 cells) and head outputs (`hook_z`, all positions; 144 heads). Per sweep it prints our time,
the naive loop's, TL's `get_act_patch_resid_pre` / `get_act_patch_attn_head_out_all_pos` on the same weights
and tokens, the largest difference between the three results, the FLOP floor (multiply-adds the cells
really need, counted from the shapes, over the naive loop's) and our time over the naive loop's; then
attribution patching's time and its correlation with the exact sweep.
Targets: equal within 1e-4; >= 4x faster than TL on both sweeps together; our time / naive time within 1.3x
of the floor's share.

TL runs in its own virtual environment, `.venv-tl` in the repo root, created on first use (CPU torch
2.13.0 first, then `transformer-lens<3` with the pins that install here), or the Python given by
`--tl-python` / `$CIRCUITLAB_TL_PYTHON`; the two processes exchange weights and results through files.

Run: `PYTHONPATH=src .venv/bin/python benchmarks/patching.py [--threads 2] [--naive-fraction 1] [--tl-fraction 1]`.
A fraction f < 1 times that loop on a random f of the cells and extrapolates its time; differences are then
over those cells.

Measured (2 shared CPU cores, load average ~1.8 besides this run, `--threads 2 --naive-fraction 0.25
--tl-fraction 0.25 --tl-python /work/venv-tl/bin/python`, 2026-12-02): resid_pre ours 4.95 s, naive 39.8 s,
TL 47.9 s (9.7x); head outputs ours 6.02 s, naive 24.2 s, TL 27.4 s (4.6x); both: TL / ours 6.86x, max
|difference| 7.4e-07; FLOP floor / naive 0.159 (resid_pre 0.100, heads 0.257), ours / naive 0.171: 1.08x the
floor's share (resid_pre 1.25x, heads 0.97x). Attribution patching 0.63 s / 0.58 s, correlation with the exact
sweep 0.948 / 0.992. The naive and TL times moved by up to 2x between runs on the busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from circuitlab import HookedTransformer, HookedTransformerConfig
from circuitlab.analysis import attribution_patch, logit_diff, patch_head_out_all_pos, patch_resid_pre
from circuitlab.model.names import get_act_name

ROOT = Path(__file__).resolve().parent.parent
GPT2_SMALL = dict(
    n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257, n_ctx=1024, act_fn="gelu_new"
)
TL_PINS = ["transformer-lens<3", "transformers<5", "numpy<2", "pyarrow<18", "datasets<4"]


# ---- TransformerLens in its own environment ------------------------------------------------------
def tl_python(given: str | None) -> Path:
    """The TL environment's Python: the one given, or `.venv-tl` (built now if missing)."""
    if given:
        return Path(given)
    venv = ROOT / ".venv-tl"
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        print(f"creating {venv} (CPU torch 2.13.0, then {' '.join(TL_PINS)}) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0"], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *TL_PINS], check=True)
        (venv / ".complete").touch()
    return python


def run_tl(python: Path, model, data: dict, sweeps: dict, threads: int | None) -> tuple[dict, dict]:
    """TL's sweeps in a subprocess on the same weights: ({sweep: values [cells]}, {sweep: seconds})."""
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        job = {"cfg": GPT2_SMALL, "threads": threads, "sweeps": sweeps}
        (folder / "job.json").write_text(json.dumps(job))
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        torch.save({"state": state, **data}, folder / "job.pt")
        worker = Path(__file__).with_name("tl_patching_worker.py")
        done = subprocess.run([str(python), str(worker), str(folder)], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the TransformerLens worker failed:\n{done.stderr[-3000:]}")
        times = json.loads((folder / "result.json").read_text())["times"]
        return torch.load(folder / "result.pt", weights_only=True), times


# ---- the naive loop and the FLOP floor -----------------------------------------------------------
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


def layer_macs(cfg, n_batch: int, rows: int, keys_from: int, n_keys: int, qkv_rows: int | None = None) -> dict:
    """Multiply-adds of one block: q / attention / O / MLP at `rows` query positions attending to `n_keys`
    keys, keys and values computed for `n_keys - keys_from` positions; `qkv_rows` overrides the positions
    whose q/k/v are computed (a residual patch changes only those)."""
    d, dh, h, kv = cfg.d_model, cfg.d_head, cfg.n_heads, cfg.n_kv_heads
    kv_rows = n_keys - keys_from if qkv_rows is None else qkv_rows
    q_rows = rows if qkv_rows is None else min(rows, qkv_rows)
    mlp = (3 if cfg.gated_mlp else 2) * d * cfg.d_mlp
    return n_batch * (q_rows * d * h * dh + kv_rows * 2 * d * kv * dh + rows * (2 * h * dh * n_keys + h * dh * d + mlp))


def forward_macs(cfg, n_batch: int, n_pos: int, read: int) -> int:
    """A full forward (queries attend to all keys: an upper bound the causal kernels may halve) + unembedding."""
    return cfg.n_layers * layer_macs(cfg, n_batch, n_pos, 0, n_pos) + n_batch * read * cfg.d_model * cfg.d_vocab_out


def floor_macs(cfg, n_batch: int, n_pos: int, act: str, cells: list[tuple[int, int | None]]) -> int:
    """What the cells really need (metric at the last position): cells are (layer, first differing position
    or None when the patched activation equals the unpatched one). A resid_pre cell recomputes q/k/v only at
    its position in its own layer; a head-output cell starts at the head's share of the output projection
    plus the MLP; every later block runs on positions >= start, the last one its queries, output and MLP
    only at the last position; the unembedding reads the last position. Plus the two forwards giving the
    clean activations and the corrupted run's keys and values."""
    total = 2 * forward_macs(cfg, n_batch, n_pos, 1)
    d, dh, mlp = cfg.d_model, cfg.d_head, (3 if cfg.gated_mlp else 2) * cfg.d_model * cfg.d_mlp
    for layer, start in cells:
        if start is None:
            continue
        m = n_pos - start
        for j in range(layer, cfg.n_layers):
            rows = 1 if j == cfg.n_layers - 1 else m
            if j == layer and act == "z":  # one head's output projection, then the MLP
                total += n_batch * rows * (dh * d + mlp)
            elif j == layer:
                total += layer_macs(cfg, n_batch, rows, start, n_pos, qkv_rows=1)
            else:
                total += layer_macs(cfg, n_batch, rows, start, n_pos)
        total += n_batch * d * cfg.d_vocab_out
    return total


def first_difference(a: torch.Tensor, b: torch.Tensor) -> int | None:
    """First position (dim 1 of [batch, pos, ...]) where a and b differ, None if equal."""
    rows = (a != b).transpose(0, 1).flatten(1).any(1).nonzero()
    return int(rows[0]) if len(rows) else None


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--pos", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch threads, both processes (default: torch's)")
    parser.add_argument("--naive-fraction", type=float, default=1.0, help="fraction of cells the naive loop runs")
    parser.add_argument("--tl-fraction", type=float, default=1.0, help="fraction of cells TransformerLens runs")
    parser.add_argument("--tl-python", default=os.environ.get("CIRCUITLAB_TL_PYTHON"), help="TL venv's python")
    parser.add_argument("--no-tl", action="store_true", help="skip TransformerLens")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = HookedTransformer(HookedTransformerConfig(**GPT2_SMALL, seed=args.seed)).eval()
    cfg = model.cfg
    gen = torch.Generator().manual_seed(args.seed)
    clean = torch.randint(0, cfg.d_vocab, (args.batch, args.pos), generator=gen)
    corrupted = clean.clone()
    for p in (args.pos // 4, args.pos // 2):  # two corrupted positions, as a name swap would
        corrupted[:, p] = torch.randint(0, cfg.d_vocab, (args.batch,), generator=gen)
    answer, distractor = torch.randint(0, cfg.d_vocab, (2, args.batch), generator=gen)
    metric = logit_diff(answer, distractor)
    n_layers, n_heads, n_pos = cfg.n_layers, cfg.n_heads, args.pos
    print(
        f"GPT-2-small-shaped model (random weights, float32, cpu, {torch.get_num_threads()} threads), "
        f"{args.batch} x {n_pos} tokens; load: {os.getloadavg()[0]:.2f} (1-min average) on {os.cpu_count()} CPUs"
    )
    sweeps = {
        "resid_pre": (patch_resid_pre, "resid_pre", n_pos, lambda l, i: (slice(None), i), True),
        "head_out": (patch_head_out_all_pos, "z", n_heads, lambda l, i: (slice(None), slice(None), i), False),
    }
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean)
        _, corrupted_cache = model.run_with_cache(corrupted)
    chosen = {}
    for name, (_, _, width, _, _) in sweeps.items():
        n_cells = n_layers * width
        n_naive = max(1, round(args.naive_fraction * n_cells))
        chosen[name] = sorted(torch.randperm(n_cells, generator=gen)[: max(n_naive, 1)].tolist())
    tl_cells = {}
    for name, (_, _, width, _, _) in sweeps.items():
        n_cells = n_layers * width
        n_tl = max(1, round(args.tl_fraction * n_cells))
        tl_cells[name] = sorted(torch.randperm(n_cells, generator=gen)[:n_tl].tolist()) if n_tl < n_cells else None
        tl_cells[name] = tl_cells[name] or list(range(n_cells))
    tl_values, tl_times = {}, {}
    if not args.no_tl:
        data = dict(clean=clean, corrupted=corrupted, answer=answer, distractor=distractor)
        tl_values, tl_times = run_tl(tl_python(args.tl_python), model, data, tl_cells, args.threads)

    totals = dict(ours=0.0, naive=0.0, tl=0.0, floor=0, naive_macs=0)
    worst = 0.0
    naive_read = n_pos  # the naive loop unembeds every position
    for name, (fn, act, width, index, by_pos) in sweeps.items():
        start = time.perf_counter()
        with torch.no_grad():
            grid = fn(model, clean, corrupted, metric, progress=False)
        ours_s = time.perf_counter() - start
        flat = grid.flatten().double()
        cells = [(c // width, index(c // width, c % width)) for c in range(n_layers * width)]
        start = time.perf_counter()
        with torch.no_grad():
            naive = naive_sweep(model, clean, corrupted, metric, act, [cells[c] for c in chosen[name]])
        naive_s = (time.perf_counter() - start) * len(cells) / len(chosen[name])
        diffs = [abs(float(flat[c]) - v) for c, v in zip(chosen[name], naive, strict=True)]
        line = f"{name:9s} {len(cells):4d} cells: ours {ours_s:7.2f} s, naive {naive_s:7.2f} s"
        if len(chosen[name]) < len(cells):
            line += f" (from {len(chosen[name])} cells)"
        if name in tl_values:
            tl_s = tl_times[name] * len(cells) / len(tl_cells[name])
            tl_flat = tl_values[name]
            diffs += [abs(float(flat[c]) - float(v)) for c, v in zip(tl_cells[name], tl_flat, strict=True)]
            naive_by_cell = dict(zip(chosen[name], naive, strict=True))
            diffs += [
                abs(naive_by_cell[c] - float(v))
                for c, v in zip(tl_cells[name], tl_flat, strict=True)
                if c in naive_by_cell
            ]
            totals["tl"] += tl_s
            line += f", TL {tl_s:7.2f} s" + (f" (from {len(tl_cells[name])} cells)" if tl_s != tl_times[name] else "")
            line += f", TL / ours {tl_s / ours_s:5.2f}x"
        worst = max(worst, max(diffs))
        # The floor, counted from the shapes and where the two runs' activations first differ.
        site = get_act_name(act, 0).replace(".0.", ".{}.")
        starts = []
        for layer in range(n_layers):
            a, b = clean_cache[site.format(layer)], corrupted_cache[site.format(layer)]
            for i in range(width):
                sl = (slice(None), slice(i, i + 1)) if by_pos else (slice(None), slice(None), slice(i, i + 1))
                first = first_difference(a[sl], b[sl])
                starts.append((layer, None if first is None else (i if by_pos else first)))
        floor = floor_macs(cfg, args.batch, n_pos, act, starts)
        naive_macs = forward_macs(cfg, args.batch, n_pos, 1)  # the clean run whose activations are patched in
        naive_macs += len(cells) * forward_macs(cfg, args.batch, n_pos, naive_read)
        totals["ours"] += ours_s
        totals["naive"] += naive_s
        totals["floor"] += floor
        totals["naive_macs"] += naive_macs
        print(
            line + f"; max |difference| {max(diffs):.1e}; FLOP floor / naive {floor / naive_macs:.3f}, "
            f"ours / naive {ours_s / naive_s:.3f} ({ours_s / naive_s / (floor / naive_macs):.2f}x the floor's share)"
        )
        start = time.perf_counter()
        estimate = attribution_patch(model, clean, corrupted, metric, act, by_pos=by_pos)
        attr_s = time.perf_counter() - start
        r = pearson(estimate, grid)
        print(f"          attribution patching {attr_s:6.2f} s, correlation with the exact sweep {r:.3f}")
    # Why time and multiply-adds part ways: the blocks carry elementwise work (LayerNorm, GELU) the count
    # leaves out, the naive loop's full-vocabulary unembedding of every position is one efficient GEMM.
    with torch.no_grad():
        blocks_s = min(timed(lambda: model(corrupted, stop_at_layer=n_layers)) for _ in range(3))
        full_s = min(timed(lambda: model(corrupted)) for _ in range(3))
    unembed_share = args.batch * n_pos * cfg.d_model * cfg.d_vocab_out / forward_macs(cfg, args.batch, n_pos, n_pos)
    print(
        f"one naive forward {full_s:.3f} s: the blocks {blocks_s / full_s:.0%} of its time, the final norm and "
        f"unembedding {1 - blocks_s / full_s:.0%} (they are {unembed_share:.0%} of its multiply-adds)"
    )
    share = totals["floor"] / totals["naive_macs"]
    line = f"both      ours {totals['ours']:7.2f} s, naive {totals['naive']:7.2f} s"
    if totals["tl"]:
        line += f", TL {totals['tl']:7.2f} s, TL / ours {totals['tl'] / totals['ours']:.2f}x (target >= 4x)"
    print(line + f"; max |difference| {worst:.1e} (target <= 1e-4)")
    ratio = totals["ours"] / totals["naive"]
    print(
        f"          FLOP floor / naive {share:.3f}, ours / naive {ratio:.3f}: {ratio / share:.2f}x the floor's share "
        "(target <= 1.3x)"
    )


if __name__ == "__main__":
    main()
