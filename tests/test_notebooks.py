"""The notebooks in examples/ run top to bottom, offline, in a real Jupyter kernel (nbclient + ipykernel):
a cell that raises fails the test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))


def test_the_examples_are_there() -> None:
    names = [p.stem for p in NOTEBOOKS]
    assert names == [
        "01_tour",
        "02_induction_circuit",
        "03_activation_patching",
        "04_games_and_probes",
        "05_for_learners",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    book = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in book.cells if c.cell_type == "code"), "commit notebooks without outputs"
    # The kernel is this interpreter (ipykernel's own "python3" spec resolves to sys.executable), one thread.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    client = nbclient.NotebookClient(
        book, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()
    errors = [o for c in book.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    rich = [k for c in book.cells for o in c.get("outputs", []) for k in o.get("data", {}) if k != "text/plain"]
    assert rich or path.stem in ("01_tour", "05_for_learners")  # the analysis notebooks show figures / tables
