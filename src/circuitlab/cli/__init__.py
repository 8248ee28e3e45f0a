"""The `circuitlab` command: one sub-command per module (`circuitlab train ...`).

Errors print as one line (`error: ...`) unless `--debug` is given.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from . import census as census_cmd
from . import circuit as circuit_cmd
from . import exercises as exercises_cmd
from . import info as info_cmd
from . import patch as patch_cmd
from . import report as report_cmd
from . import serve as serve_cmd
from . import study as study_cmd
from . import train as train_cmd

COMMANDS = {
    "train": train_cmd,
    "report": report_cmd,
    "census": census_cmd,
    "patch": patch_cmd,
    "info": info_cmd,
    "serve": serve_cmd,
    "study": study_cmd,
    "circuit": circuit_cmd,
    "exercises": exercises_cmd,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="circuitlab", description="A laboratory for transformer circuits.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for _name, module in COMMANDS.items():
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command].run(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one clear line for users; --debug for the traceback
        if args.debug:
            traceback.print_exc()
        else:
            print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
