"""What every study shares: a claim, thresholds fixed in advance, and a verdict written to disk.

A study trains what it needs, measures, and compares each measurement with a threshold stated before
any result was seen (in its module, next to the claim). `run_study` writes `verdict.json` and
`report.html` into the output folder, atomically.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..files import atomic_write_text
from ..viz.page import Page

Op = Literal[">", ">=", "<", "<="]
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


@dataclass(frozen=True)
class Check:
    """One pre-registered test: `measured <op> threshold`."""

    name: str
    measured: float
    op: Op
    threshold: float
    description: str = ""

    @property
    def passed(self) -> bool:
        return _OPS[self.op](self.measured, self.threshold)

    def row(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "measured": self.measured,
            "test": f"{self.op} {self.threshold:g}",
            "result": "PASS" if self.passed else "FAIL",
            "what": self.description,
        }


@dataclass
class Verdict:
    """The claim, what was measured, each check against its threshold, and the seeds used."""

    study: str
    claim: str
    checks: list[Check]
    measurements: dict[str, Any]
    seeds: list[int]
    quick: bool
    wall_time_s: float = 0.0
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "claim": self.claim,
            "verdict": "PASS" if self.passed else "FAIL",
            "checks": [{**asdict(c), "passed": c.passed} for c in self.checks],
            "measurements": self.measurements,
            "seeds": self.seeds,
            "quick": self.quick,
            "wall_time_s": self.wall_time_s,
            "environment": self.environment,
        }


@dataclass(frozen=True)
class StudyResult:
    """What a study's `run` returns: its checks and measurements, and a page with its figures."""

    checks: list[Check]
    measurements: dict[str, Any]
    page: Page


@dataclass(frozen=True)
class Study:
    """A named, registered experiment. `run(out_dir, seeds, quick)` does the work."""

    name: str
    claim: str
    run: Callable[[Path, list[int], bool], StudyResult]
    default_seeds: int = 1


STUDIES: dict[str, Study] = {}


def register(study: Study) -> Study:
    if study.name in STUDIES:
        raise ValueError(f"study {study.name!r} is already registered")
    STUDIES[study.name] = study
    return study


def get_study(name: str) -> Study:
    if name not in STUDIES:
        import difflib

        close = difflib.get_close_matches(name, list(STUDIES), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown study {name!r}{hint} Known: {', '.join(sorted(STUDIES))}")
    return STUDIES[name]


def run_study(name: str, out_dir: str | Path, seeds: int | None = None, quick: bool = False) -> Verdict:
    """Run a registered study and write `verdict.json` and `report.html` into `out_dir`."""
    import torch

    study = get_study(name)
    n = study.default_seeds if seeds is None else seeds
    if n < 1:
        raise ValueError(f"seeds must be >= 1, got {n}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_list = list(range(n))
    start = time.perf_counter()
    result = study.run(out, seed_list, quick)
    verdict = Verdict(
        study=study.name,
        claim=study.claim,
        checks=result.checks,
        measurements=result.measurements,
        seeds=seed_list,
        quick=quick,
        wall_time_s=round(time.perf_counter() - start, 2),
        environment={
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": str(torch.get_num_threads()),
        },
    )
    page = Page(f"Study: {study.name}")
    page.heading("Claim").text(study.claim)
    page.heading("Verdict").raw_html(
        f'<p class="{"pass" if verdict.passed else "fail"}">{"PASS" if verdict.passed else "FAIL"}</p>'
    )
    page.table([c.row() for c in verdict.checks])
    page.text(f"Seeds: {seed_list}. Quick mode: {quick}. Wall time: {verdict.wall_time_s:.1f} s.")
    page.include(result.page)
    atomic_write_text(out / "verdict.json", json.dumps(verdict.to_dict(), indent=2, default=float) + "\n")
    page.save(out / "report.html")
    return verdict
