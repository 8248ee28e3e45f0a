"""Where the real trained weights in `shared/models/` are: never copied into the repository.

The `shared/` folder sits beside the checkout (`<clone>/../shared` in CI, `/work/shared` here); a worktree
deeper down finds it by searching upwards. `CIRCUITLAB_SHARED_DIR` (the folder holding `models/`) wins.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def shared_model(name: str) -> Path:
    """The folder `shared/models/<name>`, or a pytest skip saying where it was looked for."""
    roots = [Path(os.environ["CIRCUITLAB_SHARED_DIR"])] if os.environ.get("CIRCUITLAB_SHARED_DIR") else []
    roots += [parent / "shared" for parent in Path(__file__).resolve().parents]
    for root in roots:
        if (root / "models" / name / "config.json").is_file():
            return root / "models" / name
    pytest.skip(f"real weights shared/models/{name} not found (looked in {[str(r) for r in roots[:4]]}...)")
