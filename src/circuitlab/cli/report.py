"""`circuitlab report RUN_DIR [--out report.html]`: the run's self-contained HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

HELP = "write a run's self-contained HTML report"  # the line in `circuitlab --help`


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help=HELP,
        description="Write one self-contained HTML file (opens offline) for a run directory written by "
        "`circuitlab train`: config, training curves, head census with evidence, attention on a sample, "
        "circuits (composition, full OV, positional QK) and head-role trajectories over the checkpoints.",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory (config.json, metrics.jsonl, ...)")
    p.add_argument("--out", type=Path, help="output HTML file (default RUN_DIR/report.html)")
    p.add_argument("--png", type=Path, metavar="DIR", help="also write every figure as a PNG into DIR")
    p.add_argument("--sample", type=int, default=8, help="sequences drawn from the task for the sample (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the probes and the sample")
    p.add_argument("--threads", type=int, help="torch CPU threads")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..report import build_report

    if args.threads:
        torch.set_num_threads(args.threads)
    path = build_report(args.run_dir, args.out, sample_size=args.sample, seed=args.seed, png_dir=args.png)
    print(f"report written to {path} ({path.stat().st_size / 1e6:.1f} MB, self-contained)")
    if args.png:
        print(f"figures as PNG in {args.png}")
    return 0
