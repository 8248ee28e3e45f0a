"""The run report: one self-contained HTML file with every section, built from a run directory."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from circuitlab.cli import main
from circuitlab.report import ROLE_SCORES, build_report, checkpoint_score_rows
from circuitlab.runs import open_run

# The results first; the training curves after them; the configuration a collapsed section at the end.
SECTIONS = (
    "Head census",
    "Attention on a sample",
    "Circuits",
    "Circuit discovery",
    "Training curves",
    "Role trajectories over training",
)


def external_refs(html: str) -> list[str]:
    """http(s) addresses in <script src> / <link href>: what a browser would fetch over the network."""
    tags = re.findall(r"<(?:script|link)\b[^>]*>", html, flags=re.IGNORECASE)
    return [t for t in tags if re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", t, re.IGNORECASE)]


def test_external_refs_detects_cdn_scripts() -> None:
    assert external_refs('<script src="https://cdn.plot.ly/plotly.min.js"></script>')
    assert external_refs("<link rel=stylesheet href='//fonts.example/x.css'>")
    assert not external_refs('<script type="text/javascript">var a = "https://x";</script>')


def test_report_command_writes_a_self_contained_file(trained_induction, tmp_path: Path, capsys) -> None:
    _, result = trained_induction
    out = tmp_path / "report.html"
    assert main(["report", str(result.run_dir), "--out", str(out), "--sample", "2"]) == 0
    assert f"report written to {out}" in capsys.readouterr().out
    html = out.read_text()
    assert external_refs(html) == []
    assert html.count("<script") == html.count("</script>") and "cdn.plot.ly" not in html.split("<body>", 1)[1]
    where = [html.index(f"<h2>{section}</h2>") for section in SECTIONS]
    assert where == sorted(where)  # in this order
    config = html.index("<details><summary>Configuration")
    assert config > where[-1] and "&quot;task&quot;" in html[config:]
    assert "could not be built" not in html
    assert "reaching 0.9 faithfulness" in html and "Against the agreed circuit" in html
    assert re.search(r"<td>L1H\d</td><td>induction[^<]*</td><td>[0-9.]+</td><td>induction 0\.\d\d vs", html)
    n_figures = html.count('class="plotly-graph-div"')
    # curves 2, census 1, sample 3, circuits 3 + full OV + positional QK, discovered circuit 1, one trajectory
    # per role score
    assert n_figures == 2 + 1 + 3 + 5 + 1 + len(ROLE_SCORES)
    assert not (result.run_dir / "report.html").exists()  # --out respected


def test_trajectories_recomputed_from_checkpoints(trained_induction, tmp_path: Path) -> None:
    """A run without recorded head scores: the report recomputes them on the checkpoints, and they equal
    what register_head_scores recorded at the same steps."""
    _, result = trained_induction
    run = open_run(result.run_dir)
    recorded = {r["step"]: r for r in run.metrics}
    steps = [s for s, _ in run.checkpoints if s in recorded][-2:]
    assert len(steps) == 2
    copy = tmp_path / "run"
    shutil.copytree(run.path / "final", copy / "final")
    shutil.copy(run.path / "config.json", copy / "config.json")
    (copy / "checkpoints").mkdir()
    for step in steps:
        name = f"step_{step:06d}.safetensors"
        shutil.copy(run.path / "checkpoints" / name, copy / "checkpoints" / name)
    stripped = [{k: v for k, v in r.items() if not k.startswith("heads.")} for r in run.metrics]
    (copy / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stripped))

    rows = checkpoint_score_rows(open_run(copy))
    assert [r["step"] for r in rows] == steps
    for row in rows:
        keys = [k for k in row if k.startswith("heads.")]
        assert len(keys) == 8 * 4  # 8 scores x 4 heads
        for key in keys:
            assert row[key] == pytest.approx(recorded[row["step"]][key], abs=2e-5), key

    html = build_report(copy, sample_size=2).read_text()
    assert "Head scores recomputed on each checkpoint" in html and "could not be built" not in html


def test_report_refuses_what_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a run directory"):
        build_report(tmp_path)


def test_a_failing_section_is_reported_not_fatal(trained_induction, tmp_path: Path, monkeypatch) -> None:
    """Head scores can be impossible (a context too short for the probes): the report says so and keeps
    every other section."""
    import circuitlab.analysis

    def refuse(*args, **kwargs):
        raise ValueError("n_ctx=3 is too short for the head-score probes")

    monkeypatch.setattr(circuitlab.analysis, "head_scores", refuse)
    _, result = trained_induction
    html = build_report(result.run_dir, tmp_path / "r.html", sample_size=2).read_text()
    assert "(this section could not be built: head scores unavailable: n_ctx=3 is too short" in html
    assert html.count("could not be built") == 1 and "full OV circuit W_E W_V W_O W_U of L1H0, first" in html
