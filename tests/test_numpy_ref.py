"""The NumPy twin equals the torch model (float64, 1e-5) for every config switch, activations included."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from circuitlab.numpy_ref import erf, export_npz, forward, load_npz

from .conftest import CONFIGS, small_model


def _assert_close(a: np.ndarray, b: np.ndarray, name: str) -> None:
    finite = np.isfinite(b)
    assert np.array_equal(np.isfinite(a), finite), name  # masked scores are -inf in both
    assert a.shape == b.shape, name
    np.testing.assert_allclose(a[finite], b[finite], atol=1e-5, rtol=1e-5, err_msg=name)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_numpy_twin_matches_torch(name: str, tmp_path: Path, tokens: torch.Tensor) -> None:
    model = small_model(dtype=torch.float64, **CONFIGS[name])
    logits, cache = model.run_with_cache(tokens)
    cfg, params = load_npz(export_npz(model, tmp_path / "model.npz"))
    np_logits, acts = forward(params, cfg, tokens.numpy())
    _assert_close(np_logits, logits.detach().numpy(), "logits")
    assert set(acts) == set(cache.keys())
    for key, value in acts.items():
        _assert_close(value, cache[key].numpy(), key)


def test_twin_accepts_the_config_object(tokens: torch.Tensor) -> None:
    model = small_model(dtype=torch.float64)
    params = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    np_logits, _ = forward(params, model.cfg, tokens.numpy())
    np.testing.assert_allclose(np_logits, model(tokens).detach().numpy(), atol=1e-10)


def test_erf_to_double_precision() -> None:
    x = np.linspace(-8, 8, 4001)
    expected = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(erf(x), expected, atol=1e-14)


def test_numpy_twin_does_not_need_torch(tmp_path: Path) -> None:
    code = "import sys, circuitlab.numpy_ref; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_load_npz_rejects_foreign_files(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="export_npz"):
        load_npz(tmp_path / "x.npz")
