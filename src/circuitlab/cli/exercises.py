"""`circuitlab exercises new|check|build|list`: the learner's NumPy problem sets (see circuitlab.exercises)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    from ..exercises import DEFAULT_SET, SETS

    p = sub.add_parser(
        "exercises",
        help="NumPy problem sets with .npz tests: new DIR, check DIR, build, list",
        description="Problem sets for learners: functions to write in NumPy, tested against .npz fixtures. "
        f"Sets: {', '.join(SETS)}.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    new = actions.add_parser("new", help="write problems.py, its fixtures and a README into a new folder")
    new.add_argument("dir", type=Path, metavar="DIR", help="a folder that does not exist yet (or is empty)")
    new.add_argument("--set", default=DEFAULT_SET, choices=list(SETS), help=f"the problem set (default {DEFAULT_SET})")
    check = actions.add_parser("check", help="test DIR/problems.py (PASS / FAIL / NOT YET per problem, loops flagged)")
    check.add_argument("dir", type=Path, metavar="DIR")
    check.add_argument("--solutions", action="store_true", help="test the reference solutions instead")
    build = actions.add_parser("build", help="regenerate the packaged fixtures from circuitlab's implementations")
    build.add_argument("--set", choices=list(SETS), help="one set (default: all)")
    build.add_argument("--train", action="store_true", help="also retrain the circuits set's induction model")
    build.add_argument("--out", type=Path, help="write into OUT/SET instead of the package's data folder")
    actions.add_parser("list", help="list the problem sets and their problems")


def run(args: argparse.Namespace) -> int:
    from .. import exercises as ex
    from ..exercises import checker

    if args.action == "new":
        path = ex.new_set(args.dir, args.set)
        print(f"wrote set {args.set} into {args.dir}: edit {path.name}, then run `python {path}`")
        return 0
    if args.action == "check":
        return checker.report(ex.check_folder(args.dir, solutions=args.solutions))
    if args.action == "build":
        from ..exercises.build import write_set

        for name in [args.set] if args.set else list(ex.SETS):
            data_dir = args.out / name if args.out else None
            if args.out and name == "circuits" and not args.train:  # its stored model is the build's input
                data_dir.mkdir(parents=True, exist_ok=True)
                (data_dir / "model.npz").write_bytes((ex.SETS[name].data_dir / "model.npz").read_bytes())
            for path in write_set(name, data_dir, train=args.train):
                print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
        return 0
    for problem_set in ex.SETS.values():
        print(f"{problem_set.name}: {problem_set.summary}")
        print("    " + ", ".join(problem_set.problems))
    return 0
