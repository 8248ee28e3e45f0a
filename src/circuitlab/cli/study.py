"""`circuitlab study NAME [--seeds N] [--workers N] [--out DIR] [--quick]`: run a one-command study;
`--list` lists them with their measured wall times; `--summary DIR` writes docs/studies.md from DIR's verdicts."""

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
        "in advance, and writes DIR/verdict.json and DIR/report.html (verdict PASS, FAIL, or INCONCLUSIVE when a "
        "precondition of the claim did not hold). `circuitlab study --list` shows the claims and measured times.",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="the study to run (see --list)")
    p.add_argument("--list", action="store_true", help="list the studies, their claims and measured wall times")
    p.add_argument("--seeds", type=int, help="number of seeds (default: the study's own)")
    p.add_argument("--workers", type=int, default=1, help="processes running independent seeds in parallel")
    p.add_argument("--out", type=Path, help="output folder (default runs/studies/NAME)")
    p.add_argument("--quick", action="store_true", help="fast mode (under 2 minutes here), as the tests run it")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress lines or training bars on stderr")
    p.add_argument(
        "--summary",
        type=Path,
        metavar="DIR",
        help="write a Markdown table of every DIR/*/verdict.json (to --summary-out) instead of running a study",
    )
    p.add_argument("--summary-out", type=Path, default=Path("docs") / "studies.md", help="where --summary writes")


def _seconds(value: float | None) -> str:
    if value is None:
        return "not measured"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.0f} min"


def run(args: argparse.Namespace) -> int:
    from ..studies import STUDIES, run_study

    if args.summary is not None:
        from ..studies.summary import write_summary

        if args.name or args.list:
            raise ValueError("--summary writes the table of existing verdicts: give no study NAME and no --list")
        path = write_summary(args.summary, args.summary_out)
        print(f"wrote {path}")
        return 0
    if args.list:
        if args.name:
            raise ValueError("give either a study NAME or --list, not both")
        print(
            "Wall times measured on the 2-core development machine, default seeds, 1 worker unless noted "
            "(machine shared with other jobs: read them as upper bounds)."
        )
        for name in sorted(STUDIES):
            study = STUDIES[name]
            quick_s, full_s = study.measured_s
            seeds = f"{study.default_seeds}" + (f", quick {study.quick_seeds}" if study.quick_seeds else "")
            print(
                f"{name}  (default seeds: {seeds}; quick {_seconds(quick_s)}, full {_seconds(full_s)}"
                + (f" with {study.measured_workers} workers" if study.measured_workers > 1 else "")
                + ")"
            )
            print(textwrap.indent(textwrap.fill(study.claim, 100), "    "))
        return 0
    if not args.name:
        raise ValueError(f"give a study NAME or --list; studies: {', '.join(sorted(STUDIES))}")
    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds must be a positive integer, got {args.seeds}")
    if args.workers < 1:
        raise ValueError(f"--workers must be a positive integer, got {args.workers}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = args.out or Path("runs") / "studies" / args.name
    verdict = run_study(
        args.name, out, seeds=args.seeds, quick=args.quick, workers=args.workers, progress=not args.no_progress
    )
    for check in verdict.checks:
        row = check.row()
        print(f"  {row['result']:<12} {check.name}: {check.measured_text()} {check.test_text()}")
    if verdict.explanation:
        print(textwrap.indent(textwrap.fill(verdict.explanation, 100), "  "))
    print(f"{verdict.study}: {verdict.status} in {verdict.wall_time_s:.1f} s -> {out}/verdict.json")
    return 0 if verdict.passed else 1
