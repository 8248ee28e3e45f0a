"""The `circuitlab` command: one sub-command per module (`circuitlab train ...`).

Errors print as one line (`error: ...`) unless `--debug` is given. Only the command being run builds its
full argument parser (the others show their one-line `HELP`), and no command module imports torch at import
time, so `circuitlab --help` and `--version` answer without loading it. A closed pipe
(`circuitlab ... | head`) ends the command quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from .. import __version__
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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser: the full arguments of `command`, a one-line help for every other command (the full
    arguments of one whose module has no `HELP`)."""
    parser = argparse.ArgumentParser(prog="circuitlab", description="A laboratory for transformer circuits.")
    parser.add_argument("--version", action="version", version=f"circuitlab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        if name == command or not hasattr(module, "HELP"):
            module.add_parser(sub)
        else:
            sub.add_parser(name, help=module.HELP)
    return parser


def _command(argv: list[str]) -> str | None:
    """The sub-command named in argv: the first argument that is not an option."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return _main(argv)
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as `cat` would
        _silence_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a command a closed pipe stopped


def _main(argv: list[str]) -> int:
    args = build_parser(_command(argv)).parse_args(argv)
    try:
        return COMMANDS[args.command].run(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise
    except Exception as err:  # one clear line for users; --debug for the traceback
        if args.debug:
            traceback.print_exc()
        else:
            print(f"error: {err}", file=sys.stderr)
        return 2


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush does not complain again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (captured in tests)
        pass


if __name__ == "__main__":
    sys.exit(main())
