"""What every study shares: a claim, thresholds fixed in advance, and a verdict written to disk.

A study trains what it needs, measures, and compares each measurement with a threshold stated before
any result was seen (in its module, next to the claim). `run_study` writes `verdict.json` and
`report.html` into the output folder, atomically.

Verdicts have three values. PASS: every check holds. FAIL: a check of the claim failed.
INCONCLUSIVE: a *precondition* of the claim failed (e.g. "an induction head formed" for a claim about
induction heads), so the claim was not put to the test; a FAIL must mean the claim failed, never that
the set-up did. A check measured on several seeds keeps every seed's value, reports the spread
(min / median / max) and passes when the stated fraction of seeds (fixed in advance) passes.

A study whose seeds are independent gives `run_seed` (one seed's measurements, a JSON-able dict) and
`combine` (all seeds' dicts -> checks and page); `run_study(..., workers=N)` then runs the seeds in N
processes. Studies that only give `run` run their seeds in one process.
"""

from __future__ import annotations

import html
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..files import atomic_write_text
from ..table import Table
from ..viz.page import Page

Op = Literal[">", ">=", "<", "<="]
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}
PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"


@dataclass(frozen=True)
class Check:
    """One pre-registered test: `measured <op> threshold`.

    With `per_seed` values and `min_fraction`, the check passes when at least that fraction of the
    seeds pass (`measured` is then the median). A `precondition` check that fails makes the verdict
    INCONCLUSIVE instead of FAIL: the claim was not tested.
    """

    name: str
    measured: float
    op: Op
    threshold: float
    description: str = ""
    per_seed: tuple[float, ...] = ()
    min_fraction: float | None = None
    precondition: bool = False

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"Check {self.name!r}: op={self.op!r} is invalid: expected one of {list(_OPS)}")
        if self.min_fraction is not None and not (0 < self.min_fraction <= 1 and self.per_seed):
            raise ValueError(f"Check {self.name!r}: min_fraction needs per_seed values and a fraction in (0, 1]")

    @classmethod
    def over_seeds(
        cls,
        name: str,
        values: Sequence[float],
        op: Op,
        threshold: float,
        min_fraction: float,
        description: str = "",
        precondition: bool = False,
    ) -> Check:
        """A check on every seed's value: passes when `min_fraction` of the seeds pass."""
        values = tuple(float(v) for v in values)
        if not values:
            raise ValueError(f"Check {name!r}: no per-seed values")
        return cls(name, statistics.median(values), op, threshold, description, values, min_fraction, precondition)

    @property
    def seed_passed(self) -> list[bool]:
        return [_OPS[self.op](v, self.threshold) for v in self.per_seed]

    @property
    def fraction_passed(self) -> float | None:
        return sum(self.seed_passed) / len(self.per_seed) if self.per_seed else None

    @property
    def passed(self) -> bool:
        if self.min_fraction is not None:
            return self.fraction_passed >= self.min_fraction - 1e-12
        return _OPS[self.op](self.measured, self.threshold)

    @property
    def spread(self) -> dict[str, float] | None:
        if not self.per_seed:
            return None
        return {"min": min(self.per_seed), "median": statistics.median(self.per_seed), "max": max(self.per_seed)}

    def measured_text(self) -> str:
        """The value as a table shows it: `median [min, max]` over seeds, or the single value."""
        if not self.per_seed or len(self.per_seed) == 1:
            return f"{self.measured:.4g}"
        s = self.spread
        return f"{s['median']:.4g} [{s['min']:.4g}, {s['max']:.4g}]"

    def test_text(self) -> str:
        test = f"{self.op} {self.threshold:g}"
        if self.min_fraction is not None:
            test += f" on >= {self.min_fraction:.0%} of seeds ({self.fraction_passed:.0%} did)"
        return test

    def row(self) -> dict[str, Any]:
        result = PASS if self.passed else (INCONCLUSIVE if self.precondition else FAIL)
        return {
            "check": self.name + (" (precondition)" if self.precondition else ""),
            "measured": self.measured_text(),
            "test": self.test_text(),
            "result": result,
            "what": self.description,
        }

    def to_dict(self) -> dict[str, Any]:
        out = {**asdict(self), "per_seed": list(self.per_seed), "passed": self.passed}
        if self.per_seed:
            out.update(spread=self.spread, fraction_passed=self.fraction_passed)
        return out


def status_of(checks: Sequence[Check]) -> str:
    """INCONCLUSIVE if a precondition failed, else PASS if every check passed, else FAIL."""
    if any(c.precondition and not c.passed for c in checks):
        return INCONCLUSIVE
    return PASS if all(c.passed for c in checks) else FAIL


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
    source: str = ""
    explanation: str = ""

    @property
    def status(self) -> str:
        return status_of(self.checks)

    @property
    def passed(self) -> bool:
        return self.status == PASS

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "claim": self.claim,
            "source": self.source,
            "verdict": self.status,
            "explanation": self.explanation,
            "checks": [c.to_dict() for c in self.checks],
            "measurements": self.measurements,
            "seeds": self.seeds,
            "quick": self.quick,
            "wall_time_s": self.wall_time_s,
            "environment": self.environment,
        }

    def table(self) -> Table:
        """One row per check: measured value (median [min, max] over seeds), test, result, what it checks."""
        return Table([c.row() for c in self.checks], ["check", "measured", "test", "result", "what"], title=self.study)

    def to_pandas(self) -> Any:
        return self.table().to_pandas()

    def __repr__(self) -> str:
        lines = [f"{self.study}: {self.status} ({len(self.seeds)} seeds, quick={self.quick}, {self.wall_time_s:.0f} s)"]
        lines += [f"  {c.row()['result']:<12} {c.name}: {c.measured_text()} {c.test_text()}" for c in self.checks]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colour = {PASS: "#1a7f37", FAIL: "#cf222e", INCONCLUSIVE: "#9a6700"}.get(self.status, "#222")
        head = (
            f'<p><b>{html.escape(self.study)}</b>: <b style="color:{colour}">{self.status}</b> '
            f"({len(self.seeds)} seeds{', quick' if self.quick else ''}, {self.wall_time_s:.0f} s)<br>"
            f"{html.escape(self.claim)}</p>"
        )
        why = f"<p>{html.escape(self.explanation)}</p>" if self.explanation else ""
        return head + why + self.table()._repr_html_()


@dataclass(frozen=True)
class StudyResult:
    """What a study's `run` returns: its checks and measurements, a page with its figures, and the
    verdict's text (what held, what was refuted and why)."""

    checks: list[Check]
    measurements: dict[str, Any]
    page: Page
    explanation: str = ""


@dataclass(frozen=True)
class Study:
    """A named, registered experiment. `run(out_dir, seeds, quick)` does the work; or `run_seed(out_dir,
    seed, quick) -> dict` per seed plus `combine(out_dir, per_seed, quick) -> StudyResult`, which lets
    `--workers` run seeds in parallel. `measured_s` = (quick, full) wall time measured on the
    development machine (2 cores), for `study --list`; None where not measured. `quick_seeds`: the
    default number of seeds in quick mode (to keep it under 2 minutes)."""

    name: str
    claim: str
    run: Callable[[Path, list[int], bool], StudyResult] | None = None
    default_seeds: int = 1
    source: str = ""
    run_seed: Callable[[Path, int, bool], dict[str, Any]] | None = None
    combine: Callable[[Path, list[dict[str, Any]], bool], StudyResult] | None = None
    measured_s: tuple[float | None, float | None] = (None, None)
    quick_seeds: int | None = None  # default seeds in quick mode (None: default_seeds)
    measured_workers: int = 1  # worker processes of the measured full run

    def __post_init__(self) -> None:
        if self.run is None and (self.run_seed is None or self.combine is None):
            raise ValueError(f"study {self.name!r} needs `run`, or both `run_seed` and `combine`")


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


# ---- progress: a line per phase (and, in the trainer, a bar per training run) ------------------------
_PROGRESS = {"on": False}


def progress_enabled() -> bool:
    return _PROGRESS["on"]


def phase(text: str) -> None:
    """One line on stderr saying what the study does now (only with progress on)."""
    if _PROGRESS["on"]:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _seed_worker(
    run_seed: Callable[[Path, int, bool], dict[str, Any]],
    out_dir: str,
    seed: int,
    quick: bool,
    threads: int,
    progress: bool,
) -> dict[str, Any]:
    """One seed of a study in a worker process (spawned: a clean torch; `run_seed` travels by its name)."""
    import torch

    torch.set_num_threads(threads)
    _PROGRESS["on"] = progress
    return run_seed(Path(out_dir), seed, quick)


def _run_seeds(study: Study, out: Path, seeds: list[int], quick: bool, workers: int) -> list[dict[str, Any]]:
    if workers <= 1 or len(seeds) == 1:
        results = []
        for seed in seeds:
            phase(f"{study.name}: seed {seed} ({seeds.index(seed) + 1}/{len(seeds)})")
            results.append(study.run_seed(out, seed, quick))
        return results
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    import torch

    threads = max(1, torch.get_num_threads() // workers)
    phase(f"{study.name}: {len(seeds)} seeds on {workers} worker processes ({threads} thread(s) each)")
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [
            pool.submit(_seed_worker, study.run_seed, str(out), s, quick, threads, _PROGRESS["on"]) for s in seeds
        ]
        return [f.result() for f in futures]


def run_study(
    name: str,
    out_dir: str | Path,
    seeds: int | None = None,
    quick: bool = False,
    workers: int = 1,
    progress: bool = False,
) -> Verdict:
    """Run a registered study and write `verdict.json` and `report.html` into `out_dir`.

    `workers` > 1 runs independent seeds in that many processes (studies with `run_seed`);
    `progress` prints a line per phase and a bar per training run on stderr."""
    import torch

    study = get_study(name)
    default = study.quick_seeds if quick and study.quick_seeds is not None else study.default_seeds
    n = default if seeds is None else seeds
    if n < 1:
        raise ValueError(f"seeds must be >= 1, got {n}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_list = list(range(n))
    previous, _PROGRESS["on"] = _PROGRESS["on"], progress
    start = time.perf_counter()
    try:
        phase(f"{study.name}: {n} seed(s), {'quick' if quick else 'full'} mode -> {out}")
        if study.run_seed is not None:
            per_seed = _run_seeds(study, out, seed_list, quick, workers)
            phase(f"{study.name}: combining {n} seed(s)")
            result = study.combine(out, per_seed, quick)
        else:
            result = study.run(out, seed_list, quick)
    finally:
        _PROGRESS["on"] = previous
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
            "workers": str(workers),
            "cpus": str(os.cpu_count()),
        },
        source=study.source,
        explanation=result.explanation,
    )
    page = Page(f"Study: {study.name}")
    page.heading("Claim").text(study.claim)
    if study.source:
        page.text(f"Source: {study.source}")
    page.heading("Verdict").raw_html(f'<p class="{verdict.status.lower()}">{verdict.status}</p>')
    if result.explanation:
        page.text(result.explanation)
    page.table([c.row() for c in verdict.checks])
    page.text(f"Seeds: {seed_list}. Quick mode: {quick}. Wall time: {verdict.wall_time_s:.1f} s.")
    page.include(result.page)
    atomic_write_text(out / "verdict.json", json.dumps(verdict.to_dict(), indent=2, default=float) + "\n")
    page.save(out / "report.html")
    return verdict
