"""How long `circuitlab --help` and `--version` take, against a bare Python start and `import torch`.

Each command runs as a fresh process (`python -m circuitlab.cli ...`), interleaved, `--repeats` times;
prints the median wall time of each and the ratios. Target: `--help` and `--version` under 0.5 s.

Run: `PYTHONPATH=src .venv/bin/python benchmarks/cli_startup.py [--repeats 10]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "circuitlab --help": ["-m", "circuitlab.cli", "--help"],
    "circuitlab --version": ["-m", "circuitlab.cli", "--version"],
    "python -c 'import torch'": ["-c", "import torch"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats + 1):  # the first round warms the file cache and is dropped
        for name, argv in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, *argv], env=env, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["python -c pass"][1:])
    print(f"{args.repeats} runs each, median wall time (load average {os.getloadavg()[0]:.1f}):")
    for name, values in times.items():
        median = statistics.median(values[1:])
        print(f"  {name:26s} {median:6.3f} s  ({median / base:5.1f}x a bare Python start)")
    help_s = statistics.median(times["circuitlab --help"][1:])
    torch_s = statistics.median(times["python -c 'import torch'"][1:])
    print(f"--help is {torch_s / help_s:.1f}x faster than importing torch; target < 0.5 s: "
          f"{'met' if help_s < 0.5 else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
