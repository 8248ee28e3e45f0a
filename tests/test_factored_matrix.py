"""FactoredMatrix: products, spectra and indexing equal the materialised matrix's, without building it."""

from __future__ import annotations

import pytest
import torch

from circuitlab import FactoredMatrix


def _random(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.fixture
def fm() -> FactoredMatrix:
    return FactoredMatrix(_random(2, 3, 10, 4), _random(2, 3, 4, 10, seed=1))  # [layer, head, 10, 10], rank 4


def test_products_and_transpose(fm: FactoredMatrix) -> None:
    M = fm.A @ fm.B
    torch.testing.assert_close(fm.AB, M)
    torch.testing.assert_close(fm.BA, fm.B @ fm.A)
    torch.testing.assert_close(fm.T.AB, M.transpose(-2, -1))
    other = _random(10, 6, seed=2)
    torch.testing.assert_close((fm @ other).AB, M @ other)
    torch.testing.assert_close((other.T @ fm).AB, other.T @ M)
    vec = _random(10, seed=3)
    torch.testing.assert_close(fm @ vec, M @ vec)
    torch.testing.assert_close(vec @ fm, vec @ M)
    torch.testing.assert_close((fm @ fm).AB, M @ M)
    torch.testing.assert_close((2.5 * fm).AB, 2.5 * M)
    assert fm.shape == (2, 3, 10, 10) and fm.ndim == 4 and fm.mdim == 4
    with pytest.raises(ValueError, match="do not chain"):
        FactoredMatrix(_random(3, 4), _random(5, 3))
    with pytest.raises(ValueError, match="cannot multiply"):
        fm @ _random(7, 2)


def test_svd_eigenvalues_norm(fm: FactoredMatrix) -> None:
    M = fm.AB
    U, S, Vh = fm.svd()
    torch.testing.assert_close(U @ torch.diag_embed(S) @ Vh.transpose(-2, -1), M)  # TransformerLens convention
    torch.testing.assert_close(S, torch.linalg.svdvals(M)[..., :4])
    torch.testing.assert_close(fm.norm(), torch.linalg.matrix_norm(M))
    eig = fm.eigenvalues  # [2, 3, 4] complex
    full = torch.linalg.eigvals(M)  # [2, 3, 10], six of them ~0
    top = full.gather(-1, full.abs().argsort(-1, descending=True)[..., :4])
    torch.testing.assert_close(
        eig.gather(-1, eig.abs().argsort(-1, descending=True)).abs(), top.abs(), atol=1e-8, rtol=1e-8
    )
    torch.testing.assert_close(eig.sum(-1).real, torch.diagonal(M, dim1=-2, dim2=-1).sum(-1))  # trace
    torch.testing.assert_close(fm.make_even().AB, M)
    torch.testing.assert_close(U @ fm.collapse_l(), M)
    torch.testing.assert_close(fm.collapse_r() @ Vh.transpose(-2, -1), M)


def test_indexing(fm: FactoredMatrix) -> None:
    M = fm.AB
    torch.testing.assert_close(fm[1].AB, M[1])
    torch.testing.assert_close(fm[1, 2].AB, M[1, 2])
    torch.testing.assert_close(fm[:, 0].AB, M[:, 0])
    torch.testing.assert_close(fm[1, 2, 3:6].AB, M[1, 2, 3:6])
    torch.testing.assert_close(fm[1, 2, 3, 4].AB, M[1, 2, 3:4, 4:5])  # ints keep the matrix 2-D
    torch.testing.assert_close(fm[0, 0, :, 2:5].AB, M[0, 0, :, 2:5])
    torch.testing.assert_close(fm.get_corner(3), M[:3, :3, :3, :3])  # every dim, as TL's utils.get_corner
    torch.testing.assert_close(fm[1, 2, -1].AB, M[1, 2, -1:])  # TL 2.18 returns an empty matrix here
    with pytest.raises(ValueError, match="too long an index"):
        fm[0, 0, 1, 2, 3]
    # `...` fills the dims not given; None adds a leading dim (newer TransformerLens's indexing)
    torch.testing.assert_close(fm[..., 1].AB, M[..., 1:2])
    torch.testing.assert_close(fm[..., -1, :].AB, M[..., -1:, :])
    torch.testing.assert_close(fm[1, ..., 2:5, 3].AB, M[1, :, 2:5, 3:4])
    torch.testing.assert_close(fm[None, ..., 2:5, :].AB, M[None, ..., 2:5, :])
    torch.testing.assert_close(fm[torch.tensor([1, 0]), ..., 1].AB, M[torch.tensor([1, 0]), ..., 1:2])
    assert fm[..., 1].mdim == fm.mdim and fm.V is fm.Vh  # newer TL's name for the right singular vectors
    with pytest.raises(IndexError):
        fm[..., ...]
    with pytest.raises(ValueError, match="too long an index"):
        fm[..., 0, 0, 0, 0, 0]
    torch.testing.assert_close(fm.unsqueeze(0).AB, M[None])


def test_vocab_sized_circuit_is_never_materialised() -> None:
    """A 200k x 200k rank-8 matrix (320 GB if built) gives its norm, SVD and corner at once."""
    n, r = 200_000, 8
    fm = FactoredMatrix(_random(n, r), _random(r, n, seed=1))
    small = FactoredMatrix(fm.A[:500], fm.B[:, :500])
    assert fm.S.shape == (r,) and fm.U.shape == (n, r)
    # ||AB||_F^2 = trace(A^T A B B^T), an r x r computation.
    torch.testing.assert_close(fm.norm() ** 2, ((fm.A.T @ fm.A) * (fm.B @ fm.B.T)).sum())
    torch.testing.assert_close(fm.U.T @ fm.U, torch.eye(r, dtype=torch.float64))
    assert fm.get_corner(2).shape == (2, 2)
    torch.testing.assert_close(fm.get_corner(5), small.AB[:5, :5])
    assert fm.eigenvalues.shape == (r,)


def test_bad_shapes_raise_an_assertion_error_too(fm: FactoredMatrix) -> None:
    """TL code catches AssertionError here; ours is also a ValueError (one class, both bases)."""
    from circuitlab.model.errors import ShapeError

    assert issubclass(ShapeError, ValueError) and issubclass(ShapeError, AssertionError)
    rect = FactoredMatrix(_random(10, 4), _random(4, 6, seed=1))
    for bad in (
        lambda: FactoredMatrix(_random(3, 4), _random(5, 3)),
        lambda: fm @ _random(7, 2),
        lambda: _random(2, 7) @ fm,
        lambda: _random(7) @ fm,
        lambda: rect.BA,
        lambda: rect.eigenvalues,
        lambda: fm * _random(2),
    ):
        with pytest.raises(AssertionError):
            bad()
        with pytest.raises(ValueError):
            bad()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_spectra_upcast_to_float32(dtype: torch.dtype) -> None:
    A, B = _random(6, 3), _random(3, 6, seed=1)
    half = FactoredMatrix(A.to(dtype), B.to(dtype))
    ref = FactoredMatrix(A.to(dtype).float(), B.to(dtype).float())
    assert half.eigenvalues.dtype == torch.complex64
    expected = torch.linalg.eigvals((half.B @ half.A).float())  # TL: BA in 16 bits, then eig in float32
    torch.testing.assert_close(half.eigenvalues.abs().sort().values, expected.abs().sort().values)
    assert half.S.dtype == torch.float32
    torch.testing.assert_close(half.S, ref.S)
    torch.testing.assert_close(half.norm(), ref.norm())
