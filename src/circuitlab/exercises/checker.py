"""Check the functions of a problem set against its `.npz` fixtures, and flag Python loops in them.

This file needs only NumPy and the standard library: `circuitlab exercises new` copies it beside
`problems.py`, whose `if __name__ == "__main__":` block calls `run(globals(), __file__)`.

Fixture layout (`fixtures.npz`): `__set__` (the set's name), `__problems__` (problem names in order),
`NAME/tol` (the tolerance), and per test case i `NAME/i/in/ARG` (an argument; `NAME/i/in/ARG/KEY`
builds a dict argument) and `NAME/i/out` (the expected result; `NAME/i/out/0`, `/1`, ... for a tuple).
A string argument `file:F` is the path of file F beside the fixtures; `npz:F` is the dict of arrays in
that `.npz` file, `npz:F#KEY` its array KEY.
"""

from __future__ import annotations

import ast
import re
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FIXTURES = "fixtures.npz"
# A docstring sentence such as "A Python loop over layers is allowed." lets a function loop.
LOOP_ALLOWED = re.compile(r"loops? over [\w\s,/-]+? (?:is|are) allowed", re.IGNORECASE)
STATUSES = ("PASS", "FAIL", "ERROR", "LOOP", "NOT YET", "MISSING")


@dataclass
class Result:
    name: str
    status: str  # one of STATUSES
    message: str = ""


# ---- fixtures ------------------------------------------------------------------------------------
def load_fixtures(folder: str | Path) -> tuple[list[str], dict[str, float], dict[str, list[dict[str, Any]]]]:
    """(problem names in order, tolerance per problem, test cases per problem) from folder/fixtures.npz."""
    folder = Path(folder)
    with np.load(folder / FIXTURES, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    order = [str(n) for n in arrays.pop("__problems__")]
    arrays.pop("__set__", None)
    tols: dict[str, float] = {}
    cases: dict[str, dict[int, dict[str, Any]]] = {n: {} for n in order}
    for key, value in arrays.items():
        name, rest = key.split("/", 1)
        if rest == "tol":
            tols[name] = float(value)
            continue
        index, kind, *path = rest.split("/")
        case = cases[name].setdefault(int(index), {"in": {}, "out": {}})
        if kind == "in":
            arg, *sub = path
            if sub:
                case["in"].setdefault(arg, {})[sub[0]] = value
            else:
                case["in"][arg] = value
        else:
            case["out"][int(path[0]) if path else None] = value
    return order, tols, {n: [cases[n][i] for i in sorted(cases[n])] for n in order}


def _argument(value: Any, folder: Path) -> Any:
    """A fixture array as the function receives it: 0-d arrays become Python scalars or resolved files."""
    if isinstance(value, dict):
        return {k: np.array(v) for k, v in value.items()}
    if value.ndim == 0:
        item = value.item()
        if isinstance(item, str) and item.startswith("file:"):
            return str(folder / item[5:])
        if isinstance(item, str) and item.startswith("npz:"):
            file, _, key = item[4:].partition("#")
            with np.load(folder / file, allow_pickle=False) as data:
                return data[key] if key else {k: data[k] for k in data.files if not k.startswith("__")}
        return item
    return np.array(value)  # a fresh copy: a solution that writes into its input changes nothing here


def _expected(out: dict[int | None, np.ndarray]) -> np.ndarray | tuple[np.ndarray, ...]:
    return out[None] if None in out else tuple(out[i] for i in sorted(out))


# ---- comparing -----------------------------------------------------------------------------------
def _fmt(x: Any) -> str:
    return f"{x:.6g}" if isinstance(x, float | np.floating) else str(x)


def _index(idx: tuple) -> str:
    return "(" + ", ".join(str(int(i)) for i in idx) + ("," if len(idx) == 1 else "") + ")"


def compare(got: Any, want: np.ndarray | tuple, tol: float) -> str | None:
    """None if `got` matches `want` within tol (absolute + relative); else what differed, in one line."""
    if isinstance(want, tuple):
        if not isinstance(got, tuple | list) or len(got) != len(want):
            return f"expected a tuple of {len(want)} arrays, got {type(got).__name__}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            problem = compare(g, w, tol)
            if problem:
                return f"result [{i}]: {problem}"
        return None
    if got is None:
        return "returned None (forgot `return`?)"
    try:
        got = np.asarray(got)
    except Exception as err:  # ragged lists and the like
        return f"result is not an array: {err}"
    if got.dtype == object:
        return f"result is an object array, not numbers (got {type(got).__name__})"
    if got.shape != want.shape:
        hint = " (transposed?)" if got.ndim > 1 and got.shape == want.shape[::-1] else ""
        return f"wrong shape: got {got.shape}, expected {want.shape}{hint}"
    if want.dtype.kind in "biu":  # booleans and integers: exact
        if got.dtype.kind not in "biuf":
            return f"wrong dtype: got {got.dtype}, expected {want.dtype}"
        bad = got != want
        if bad.any():
            first = tuple(np.argwhere(bad)[0])
            return (
                f"first mismatch at index {_index(first)}: got {_fmt(got[first].item())}, expected "
                f"{_fmt(want[first].item())}; {int(bad.sum())} of {want.size} entries differ"
            )
        return None
    if got.dtype.kind not in "biuf":
        return f"wrong dtype: got {got.dtype}, expected a float array"
    got = got.astype(np.float64)
    broken = ~np.isfinite(got) & np.isfinite(want)
    if broken.any():
        first = tuple(np.argwhere(broken)[0])
        value = got[first]
        where = f"at index {_index(first)} where {_fmt(want[first].item())} was expected"
        if np.isnan(value):
            return (
                f"NaN {where} ({int(np.isnan(got).sum())} NaN entries): an overflow or 0/0 "
                "(e.g. exp of a large number: subtract the maximum first)"
            )
        return f"{_fmt(float(value))} {where} ({int(broken.sum())} such entries)"
    with np.errstate(invalid="ignore"):  # inf - inf where both are -inf (masked scores)
        diff = np.abs(got - want)
    bad = ~(diff <= tol + tol * np.abs(want)) & ~(np.isnan(got) & np.isnan(want)) & ~(got == want)
    if bad.any():
        first = tuple(np.argwhere(bad)[0])
        finite = np.isfinite(diff)
        max_err = diff[finite].max() if finite.any() else float("inf")
        return (
            f"first mismatch at index {_index(first)}: got {_fmt(got[first].item())}, expected "
            f"{_fmt(want[first].item())}; max error {max_err:.3g} (tolerance {tol:g}); "
            f"{int(bad.sum())} of {want.size} entries differ"
        )
    return None


# ---- loops ---------------------------------------------------------------------------------------
LOOP_NODES = {
    ast.For: "a `for` loop",
    ast.AsyncFor: "a `for` loop",
    ast.While: "a `while` loop",
    ast.ListComp: "a list comprehension",
    ast.SetComp: "a set comprehension",
    ast.DictComp: "a dict comprehension",
    ast.GeneratorExp: "a generator expression",
}


DICT_VIEWS = ("items", "keys", "values")


def _over_names(node: ast.AST) -> bool:
    """Whether a loop or comprehension runs over names rather than array elements: a literal tuple / list /
    set (e.g. of weight names) or a dict's items(), keys() or values()."""
    iters = (
        [node.iter] if isinstance(node, ast.For | ast.AsyncFor) else [g.iter for g in getattr(node, "generators", [])]
    )
    if not iters:  # while loops
        return False
    return all(
        isinstance(it, ast.Tuple | ast.List | ast.Set)
        or (isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) and it.func.attr in DICT_VIEWS)
        for it in iters
    )


def find_loops(source: str) -> dict[str, list[tuple[int, str]]]:
    """{function name: [(line, what), ...]} for the top-level functions of `source`: their loops and those of
    the functions they call, except in functions whose docstring allows loops; loops over literal
    collections or dict views (names, not array elements) pass."""
    funcs = {n.name: n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    own = {
        name: []
        if LOOP_ALLOWED.search(ast.get_docstring(node) or "")
        else [
            (n.lineno, what)
            for n in ast.walk(node)
            for kind, what in LOOP_NODES.items()
            if isinstance(n, kind) and not _over_names(n)
        ]
        for name, node in funcs.items()
    }
    calls = {
        name: {m.id for m in ast.walk(node) if isinstance(m, ast.Name) and m.id in funcs and m.id != name}
        for name, node in funcs.items()
    }
    found: dict[str, list[tuple[int, str]]] = {}
    for name in funcs:
        seen, stack, loops = {name}, [name], set()
        while stack:
            current = stack.pop()
            loops |= {(line, what if current == name else f"{what} in {current}()") for line, what in own[current]}
            stack += sorted(calls[current] - seen)
            seen |= calls[current]
        found[name] = sorted(loops)
    return found


# ---- running -------------------------------------------------------------------------------------
def check(
    functions: Mapping[str, Any], folder: str | Path, source: str | None = None, names: list[str] | None = None
) -> list[Result]:
    """Run every problem's cases on `functions` (a namespace); with `source`, flag loops too."""
    folder = Path(folder)
    order, tols, cases = load_fixtures(folder)
    loops = find_loops(source) if source is not None else {}
    results = []
    for name in names or order:
        fn = functions.get(name)
        if not callable(fn):
            results.append(Result(name, "MISSING", f"no function named {name}"))
            continue
        results.append(_check_one(name, fn, cases[name], tols[name], folder, loops.get(name, [])))
    return results


def _check_one(
    name: str, fn: Callable, cases: list[dict], tol: float, folder: Path, loops: list[tuple[int, str]]
) -> Result:
    for i, case in enumerate(cases):
        args = {k: _argument(v, folder) for k, v in case["in"].items()}
        try:
            with np.errstate(all="ignore"):  # overflows show up as NaN / inf in the comparison instead
                got = fn(**args)
        except NotImplementedError:
            return Result(name, "NOT YET")
        except Exception as err:
            frames = traceback.extract_tb(err.__traceback__)
            code = getattr(fn, "__code__", None)
            own = [f for f in frames if code is not None and f.filename == code.co_filename]
            line = (own or frames)[-1].lineno  # the learner's line, not NumPy's
            return Result(name, "ERROR", f"case {i}: {type(err).__name__}: {err} (line {line})")
        problem = compare(got, _expected(case["out"]), tol)
        if problem:
            return Result(name, "FAIL", f"case {i}: {problem}")
    if loops:
        line, what = loops[0]
        return Result(
            name,
            "LOOP",
            f"correct, but uses {what} (line {line}): write it with array operations "
            "(loops are allowed only where the docstring says so)",
        )
    return Result(name, "PASS")


def report(results: list[Result], out: Any = None) -> int:
    """Print one line per problem and a summary; 0 when nothing failed (NOT YET is not a failure)."""
    out = out or sys.stdout
    width = max(len(r.name) for r in results) + 2
    for r in results:
        print(f"{r.name:<{width}}{r.status:<9}{r.message}".rstrip(), file=out)
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    print(", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n) + f" (of {len(results)})", file=out)
    return 1 if any(r.status in ("FAIL", "ERROR", "LOOP", "MISSING") for r in results) else 0


def run(namespace: Mapping[str, Any], path: str) -> int:
    """What `python problems.py` does: check the functions in `namespace` (its globals)."""
    folder = Path(path).resolve().parent
    return report(check(namespace, folder, Path(path).read_text()))
