"""The `circuitlab` command as installed: `--help` / `--version` without torch, a closed pipe ends quietly,
`train` checks its output folder before it starts, and the wheel installs and runs in a fresh environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import circuitlab
from circuitlab.cli import main

SRC = Path(circuitlab.__file__).parents[1]
ROOT = SRC.parent


def python(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    kwargs = {"capture_output": True, **kwargs}
    return subprocess.run([sys.executable, *args], env=env, text=True, timeout=120, **kwargs)


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_do_not_import_torch(flag: str) -> None:
    code = (
        f"import sys\nfrom circuitlab.cli import main\ntry:\n    main([{flag!r}])\nexcept SystemExit as e:\n"
        "    assert e.code == 0, e.code\nprint('torch' in sys.modules)"
    )
    result = python("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "False"  # torch never loaded
    if flag == "--version":
        assert result.stdout.splitlines()[0] == f"circuitlab {circuitlab.__version__}"
    else:
        assert "train" in result.stdout and "serve" in result.stdout and "--version" in result.stdout


def test_a_closed_pipe_ends_quietly() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written, as after `| head -1`
    try:
        result = python("-m", "circuitlab.cli", "study", "--list", stdout=write_end, stderr=subprocess.PIPE,
                        capture_output=False)  # fmt: skip
    finally:
        os.close(write_end)
    assert result.stderr == ""  # no traceback, no "error:", no "Exception ignored"
    assert result.returncode == 141


def test_train_checks_its_output_folder_before_starting(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["train", "repeated_tokens", "--steps", "2", "--eval-every", "2", "--d-model", "16", "--n-layers", "1",
            "--task-param", "length=24", "--task-param", "max_chunk=8", "--task-param", "max_gap=4",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    (out / "notes.txt").write_text("mine")
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no banner: it failed before starting
    assert "already holds a run: pass --resume to continue it, --overwrite to replace it" in captured.err
    assert main([*argv, "--overwrite", "--resume"]) == 2
    assert "contradict" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--steps", "4", "--eval-every", "4"]) == 0
    assert json.loads((out / "config.json").read_text())["training"]["steps"] == 4
    assert not (out / "notes.txt").exists()  # the old run is gone, replaced by the new one
    capsys.readouterr()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text("{}")
    assert main([*argv[:-3], "--out", str(tmp_path / "other"), "--overwrite"]) == 2
    assert "does not look like a circuitlab run directory" in capsys.readouterr().err
    assert (tmp_path / "other" / "config.json").exists()  # never removed


@pytest.mark.slow
def test_the_wheel_installs_and_runs_in_a_fresh_environment(tmp_path: Path) -> None:
    """Build the wheel from this checkout, install it (no dependencies fetched: torch and the rest come from
    the environment running the tests, seen through a .pth file) and run the command and a forward pass."""
    checkout = tmp_path / "checkout"  # built from a copy, so that no build/ or egg-info lands in the tree
    shutil.copytree(SRC, checkout / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, checkout / name)
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", wheels, checkout],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("circuitlab-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, system_site_packages=True)
    bin_dir = env_dir / "bin"
    site = subprocess.run([bin_dir / "python", "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p, "torch").is_dir()]
    Path(site, "_test_deps.pth").write_text("\n".join(deps) + "\n")  # torch & co. without a download
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    install = subprocess.run([bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel],
                             capture_output=True, text=True, timeout=600, env=clean_env)  # fmt: skip
    assert install.returncode == 0, install.stderr
    version = subprocess.run([bin_dir / "circuitlab", "--version"], capture_output=True, text=True, env=clean_env,
                             cwd=tmp_path, timeout=60)  # fmt: skip
    assert version.returncode == 0 and version.stdout.strip() == f"circuitlab {circuitlab.__version__}"
    forward = (
        "import circuitlab, torch\n"
        "from circuitlab import HookedTransformer, HookedTransformerConfig\n"
        "cfg = HookedTransformerConfig(n_layers=1, d_model=16, n_heads=2, n_ctx=8, d_vocab=10, seed=0)\n"
        "logits = HookedTransformer(cfg)(torch.tensor([[1, 2, 3]]))\n"
        "assert logits.shape == (1, 3, 10)\n"
        "import circuitlab.web, pathlib\n"
        "assert (pathlib.Path(circuitlab.web.__file__).parent / 'static' / 'lab.js').is_file()\n"
        "print(circuitlab.__file__)"
    )
    ran = subprocess.run([bin_dir / "python", "-c", forward], capture_output=True, text=True, env=clean_env,
                         cwd=tmp_path, timeout=120)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().startswith(str(env_dir))  # the installed wheel, not this checkout


def test_extras_hold_only_what_each_feature_needs() -> None:
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = {k: {re.split(r"[<>=!~\[ ]", d)[0] for d in v} for k, v in project["optional-dependencies"].items()}
    assert extras["web"] == {"fastapi", "uvicorn"}  # serving only; the test clients live under dev
    assert {"pytest", "httpx", "selenium"} <= extras["dev"]
    assert any(c.startswith("License :: OSI Approved") for c in project["classifiers"])
