"""A learner's track: NumPy problem sets with `.npz` tests, from softmax to reading circuits.

new_set("ex", "numpy-transformer")   # ex/problems.py, ex/checker.py, ex/fixtures.npz, ex/README.md
check_folder("ex")                   # [Result(name, status, message), ...], as `python ex/problems.py` prints

A set is a solutions module (`circuitlab.exercises.solutions.<module>`): its public functions, in order,
are the problems; `problems.py` gets their signatures and docstrings with bodies that raise
NotImplementedError. The fixtures come from circuitlab's own implementations (`build.py`).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from ..files import atomic_write_text
from . import checker
from .checker import Result

DATA = Path(__file__).parent / "data"
PROBLEMS_FILE = "problems.py"
CHECKER_FILE = "checker.py"
SET_KEY = "__set__"  # in fixtures.npz: the name of the set


@dataclass(frozen=True)
class ProblemSet:
    name: str
    module: str  # under circuitlab.exercises.solutions
    summary: str

    @property
    def solutions(self) -> ModuleType:
        return importlib.import_module(f"{__name__}.solutions.{self.module}")

    @property
    def data_dir(self) -> Path:
        return DATA / self.name

    @property
    def problems(self) -> list[str]:
        """The problem names, in order (the public functions of the solutions module)."""
        tree = ast.parse(Path(self.solutions.__file__).read_text())
        return [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]


SETS: dict[str, ProblemSet] = {
    s.name: s
    for s in (
        ProblemSet("numpy-transformer", "numpy_transformer", "a transformer in NumPy: softmax to greedy generation"),
        ProblemSet("circuits", "circuits", "QK / OV circuits, composition, head scores, DLA, ablation, patching"),
        ProblemSet("games", "games", "vectorised tic-tac-toe and Othello logic, board labels, probe accuracy"),
        ProblemSet("concepts", "concepts", "course questions (scaling, positions, mask, induction) as experiments"),
    )
}
DEFAULT_SET = "numpy-transformer"


def get_set(name: str) -> ProblemSet:
    if name not in SETS:
        raise ValueError(f"unknown problem set {name!r}; sets: {', '.join(SETS)}")
    return SETS[name]


def problem_file(problem_set: ProblemSet) -> str:
    """The text of problems.py: the solutions module with every problem's body replaced by
    `raise NotImplementedError`, private helpers dropped, and the test runner after `__main__`."""
    source = Path(problem_set.solutions.__file__).read_text()
    lines = source.splitlines()
    out: list[str] = []
    done = 0  # lines[:done] are handled
    for node in ast.parse(source).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
        out += lines[done:start]
        if not node.name.startswith("_"):
            docstring = node.body[0]
            if not (isinstance(docstring, ast.Expr) and isinstance(docstring.value, ast.Constant)):
                raise ValueError(f"solution {node.name} has no docstring")
            out += [*lines[start : docstring.end_lineno], "    raise NotImplementedError"]
        done = node.end_lineno
    out += lines[done:]
    text = "\n".join(out).rstrip() + "\n"
    header = f"# circuitlab exercises, set {problem_set.name}: write the functions, then run `python problems.py`\n"
    return (
        header
        + text
        + (
            '\n\nif __name__ == "__main__":  # the tests: each function against fixtures.npz beside this file\n'
            "    import sys\n\n"
            "    from checker import run\n\n"
            "    sys.exit(run(globals(), __file__))\n"
        )
    )


def readme(problem_set: ProblemSet) -> str:
    names = "\n".join(f"{i}. `{n}`" for i, n in enumerate(problem_set.problems, 1))
    return f"""# Problem set `{problem_set.name}`

{problem_set.summary[0].upper() + problem_set.summary[1:]}.

Open `problems.py`, read the docstring of the first function, replace its `raise NotImplementedError` by
your code, and run

    python problems.py

It prints one line per problem: PASS, FAIL (what differed: the shape, the first index that does not
match, the largest error), ERROR (your code raised), LOOP (right, but with a Python loop where array
operations are asked for) or NOT YET (not written). Only NumPy is needed. The problems go from easy to
hard:

{names}

From outside the folder, `circuitlab exercises check .` runs the same tests. The expected arrays are in
`fixtures.npz` (float64; tolerance 1e-6 unless the docstring says otherwise); `checker.py` runs them.
"""


def new_set(folder: str | Path, name: str = DEFAULT_SET) -> Path:
    """Write a problem set into `folder` (which must not exist or be empty); returns problems.py's path."""
    problem_set = get_set(name)
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ValueError(f"{folder} exists and is not an empty folder: give a new or empty folder")
    data = sorted(problem_set.data_dir.glob("*.npz"))
    if not any(p.name == checker.FIXTURES for p in data):
        raise ValueError(f"set {name} has no fixtures in {problem_set.data_dir}: run `circuitlab exercises build`")
    folder.mkdir(parents=True, exist_ok=True)
    for path in data:
        shutil.copyfile(path, folder / path.name)
    shutil.copyfile(checker.__file__, folder / CHECKER_FILE)
    atomic_write_text(folder / "README.md", readme(problem_set))
    return atomic_write_text(folder / PROBLEMS_FILE, problem_file(problem_set))  # last: its presence = complete


def set_of_folder(folder: str | Path) -> ProblemSet:
    """The set a folder made by new_set holds (named in its fixtures.npz, which learners do not edit)."""
    path = Path(folder) / checker.FIXTURES
    if not (Path(folder) / PROBLEMS_FILE).is_file() or not path.is_file():
        raise ValueError(
            f"{folder} has no {PROBLEMS_FILE} and {checker.FIXTURES}: make one with `circuitlab exercises new {folder}`"
        )
    with np.load(path, allow_pickle=False) as data:
        name = str(data[SET_KEY]) if SET_KEY in data.files else None
    if name not in SETS:
        raise ValueError(f"{path} names no known problem set ({name!r}): remake the folder with `exercises new`")
    return SETS[name]


def load_problems(path: str | Path) -> ModuleType:
    """Import a learner's problems.py as a module (its `__main__` block does not run)."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"circuitlab_exercise_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))  # a learner's helper modules beside problems.py
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # a syntax error or a failing import: say where, in one line
        line = getattr(err, "lineno", None)
        raise ValueError(
            f"{path} does not run{f' (line {line})' if line else ''}: {type(err).__name__}: {err}"
        ) from err
    finally:
        sys.path.remove(str(path.parent))
    return module


def check_folder(folder: str | Path, solutions: bool = False) -> list[Result]:
    """Test a folder's problems.py (or, with `solutions`, the reference solutions) on its fixtures,
    flagging Python loops."""
    folder = Path(folder)
    problem_set = set_of_folder(folder)
    if solutions:
        module = problem_set.solutions
        source = Path(module.__file__).read_text()
    else:
        path = folder / PROBLEMS_FILE
        module, source = load_problems(path), path.read_text()
    return checker.check(vars(module), folder, source, names=problem_set.problems)


__all__ = ["DEFAULT_SET", "SETS", "ProblemSet", "Result", "check_folder", "get_set", "new_set", "problem_file"]
