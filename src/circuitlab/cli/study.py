"""`circuitlab study NAME [--seeds N] [--out DIR] [--quick]`: run a one-command study; `--list` lists them."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Any

HELP = "run a study: train, measure, and write verdict.json and report.html"  # the line in `circuitlab --help`


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "study",
        help=HELP,
        description="Run a registered study: it trains what it needs, checks its claim against thresholds fixed "
        "in advance, and writes DIR/verdict.json and DIR/report.html. `circuitlab study --list` shows the claims.",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="the study to run (see --list)")
    p.add_argument("--list", action="store_true", help="list the studies and the claim each one tests")
    p.add_argument("--seeds", type=int, help="number of seeds (default: the study's own)")
    p.add_argument("--out", type=Path, help="output folder (default runs/studies/NAME)")
    p.add_argument("--quick", action="store_true", help="fast mode (seconds to a minute), as the tests run it")
    p.add_argument("--threads", type=int, help="torch CPU threads")


def run(args: argparse.Namespace) -> int:
    from ..studies import STUDIES, run_study

    if args.list:
        if args.name:
            raise ValueError("give either a study NAME or --list, not both")
        for name in sorted(STUDIES):
            study = STUDIES[name]
            print(f"{name}  (default seeds: {study.default_seeds})")
            print(textwrap.indent(textwrap.fill(study.claim, 100), "    "))
        return 0
    if not args.name:
        raise ValueError(f"give a study NAME or --list; studies: {', '.join(sorted(STUDIES))}")
    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds must be a positive integer, got {args.seeds}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = args.out or Path("runs") / "studies" / args.name
    verdict = run_study(args.name, out, seeds=args.seeds, quick=args.quick)
    for check in verdict.checks:
        print(
            f"  {'PASS' if check.passed else 'FAIL'}  {check.name}: {check.measured:.4g} {check.op} {check.threshold:g}"
        )
    print(
        f"{verdict.study}: {'PASS' if verdict.passed else 'FAIL'} in {verdict.wall_time_s:.1f} s -> {out}/verdict.json"
    )
    return 0 if verdict.passed else 1
