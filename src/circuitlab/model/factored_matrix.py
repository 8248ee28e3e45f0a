"""`FactoredMatrix`: a low-rank product A @ B kept as its two factors.

Circuits such as W_E W_QK W_E^T are vocab x vocab but of rank at most d_head; keeping the factors makes
their SVD, eigenvalues, norm and products cheap, and nothing ldim x rdim is built unless `AB` is asked for.
Leading dimensions (e.g. [layer, head]) broadcast. The API and its conventions follow TransformerLens,
including `svd()` returning (U, S, Vh) with `U @ diag(S) @ Vh.T == AB` (Vh holds the right singular
vectors as columns).
"""

from __future__ import annotations

from functools import cached_property

import torch

from .errors import ShapeError

_HALF = (torch.float16, torch.bfloat16)


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """16-bit factors go up to float32 for eig / svd (not implemented in 16 bits), as TransformerLens does."""
    return x.float() if x.dtype in _HALF else x


class FactoredMatrix:
    def __init__(self, A: torch.Tensor, B: torch.Tensor) -> None:
        if A.ndim < 2 or B.ndim < 2:
            raise ShapeError(f"FactoredMatrix needs matrices, got A {tuple(A.shape)} and B {tuple(B.shape)}")
        if A.shape[-1] != B.shape[-2]:
            raise ShapeError(
                f"FactoredMatrix: A {tuple(A.shape)} and B {tuple(B.shape)} do not chain (A's last dim must equal "
                "B's second-to-last)"
            )
        self.ldim, self.mdim, self.rdim = A.shape[-2], A.shape[-1], B.shape[-1]
        lead = torch.broadcast_shapes(A.shape[:-2], B.shape[:-2])
        self.A = A.broadcast_to((*lead, self.ldim, self.mdim))
        self.B = B.broadcast_to((*lead, self.mdim, self.rdim))
        self.shape = torch.Size((*lead, self.ldim, self.rdim))
        self.has_leading_dims = len(lead) > 0

    # ---- products -------------------------------------------------------------------------------
    def __matmul__(self, other: torch.Tensor | FactoredMatrix) -> FactoredMatrix | torch.Tensor:
        if isinstance(other, FactoredMatrix):
            return (self @ other.A) @ other.B
        if other.shape[-2 if other.ndim >= 2 else -1] != self.rdim:
            raise ShapeError(f"cannot multiply FactoredMatrix {tuple(self.shape)} by {tuple(other.shape)}")
        if other.ndim < 2:  # a vector: the result is a vector
            return (self.A @ (self.B @ other.unsqueeze(-1))).squeeze(-1)
        # Keep the smaller inner dimension as the factorisation's hidden dimension.
        return FactoredMatrix(self.A, self.B @ other) if self.rdim > self.mdim else FactoredMatrix(self.AB, other)

    def __rmatmul__(self, other: torch.Tensor) -> FactoredMatrix | torch.Tensor:
        if other.shape[-1] != self.ldim:
            raise ShapeError(f"cannot multiply {tuple(other.shape)} by FactoredMatrix {tuple(self.shape)}")
        if other.ndim < 2:
            return ((other.unsqueeze(-2) @ self.A) @ self.B).squeeze(-2)
        return FactoredMatrix(other @ self.A, self.B) if self.ldim > self.mdim else FactoredMatrix(other, self.AB)

    def __mul__(self, scalar: float | torch.Tensor) -> FactoredMatrix:
        if isinstance(scalar, torch.Tensor) and scalar.numel() != 1:
            raise ShapeError(
                f"FactoredMatrix can only be multiplied element-wise by a scalar, got shape {tuple(scalar.shape)} "
                "(use @ for matrix products)"
            )
        return FactoredMatrix(self.A * scalar, self.B)

    __rmul__ = __mul__

    @property
    def AB(self) -> torch.Tensor:
        """The full product [..., ldim, rdim] (materialised)."""
        return self.A @ self.B

    @property
    def BA(self) -> torch.Tensor:
        """The product the other way round [..., mdim, mdim]; same non-zero eigenvalues as AB."""
        if self.ldim != self.rdim:
            raise ShapeError(f"BA needs a square FactoredMatrix, this one is {tuple(self.shape)}")
        return self.B @ self.A

    @property
    def T(self) -> FactoredMatrix:
        return FactoredMatrix(self.B.transpose(-2, -1), self.A.transpose(-2, -1))

    # ---- spectra ---------------------------------------------------------------------------------
    @cached_property
    def _svd(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        Ua, Sa, Vha = torch.linalg.svd(_at_least_float32(self.A), full_matrices=False)
        Ub, Sb, Vhb = torch.linalg.svd(_at_least_float32(self.B), full_matrices=False)
        middle = Sa[..., :, None] * (Vha @ Ub) * Sb[..., None, :]  # small: [min(l,m), min(m,r)]
        Um, Sm, Vhm = torch.linalg.svd(middle, full_matrices=False)
        U = Ua @ Um  # [..., ldim, k]
        V = Vhb.transpose(-2, -1) @ Vhm.transpose(-2, -1)  # [..., rdim, k]
        return U, Sm, V

    def svd(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(U, S, Vh) with U @ diag(S) @ Vh.T == AB, computed from the factors only (float32 for 16-bit factors)."""
        return self._svd

    @property
    def U(self) -> torch.Tensor:
        return self._svd[0]

    @property
    def S(self) -> torch.Tensor:
        return self._svd[1]

    @property
    def Vh(self) -> torch.Tensor:
        return self._svd[2]

    @property
    def V(self) -> torch.Tensor:
        """The right singular vectors as columns [..., rdim, k] (newer TransformerLens's name for `Vh`)."""
        return self._svd[2]

    @property
    def eigenvalues(self) -> torch.Tensor:
        """Complex eigenvalues of AB that can be non-zero (those of the mdim x mdim matrix BA); float32 for
        16-bit factors. A non-square matrix raises `ShapeError` (an AssertionError, as in TransformerLens)."""
        return torch.linalg.eigvals(_at_least_float32(self.BA))

    def norm(self) -> torch.Tensor:
        """Frobenius norm, per leading index."""
        return self.S.pow(2).sum(-1).sqrt()

    # ---- reshaping -------------------------------------------------------------------------------
    def __getitem__(self, idx: int | slice | tuple) -> FactoredMatrix:
        """Index like the tensor AB without building it: leading dims first, then rows, then columns.

        An int row or column keeps its dim (the result stays a matrix); `...` fills the dims not given
        (so `fm[..., 1]` is column 1); None adds a leading dim.
        """
        idx = idx if isinstance(idx, tuple) else (idx,)
        ellipses = [k for k, i in enumerate(idx) if i is Ellipsis]
        if len(ellipses) > 1:
            raise IndexError("an index can only have a single ellipsis ('...')")
        n_real = sum(i is not None and i is not Ellipsis for i in idx)
        if n_real > self.ndim:
            raise ShapeError(f"{idx} is too long an index for a FactoredMatrix with shape {tuple(self.shape)}")
        if ellipses:
            k = ellipses[0]
            idx = (*idx[:k], *(slice(None),) * (self.ndim - n_real), *idx[k + 1 :])
        n_lead = self.ndim - 2
        lead: list = []
        matrix: list = []  # the row and column indices
        for i in idx:
            if i is not None and sum(j is not None for j in lead) >= n_lead:
                matrix.append(i)
            elif matrix:
                raise IndexError("None (a new axis) is only supported among the leading dims of a FactoredMatrix")
            else:
                lead.append(i)
        A, B = self.A[tuple(lead)], self.B[tuple(lead)]
        if matrix:
            A = A[..., _keep_dim(matrix[0]), :]
        if len(matrix) == 2:
            B = B[..., :, _keep_dim(matrix[1])]
        return FactoredMatrix(A, B)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def unsqueeze(self, k: int) -> FactoredMatrix:
        """Insert a leading dimension at position k (counted among the leading dims)."""
        if k < 0:
            k = self.ndim - 1 + k
        return FactoredMatrix(self.A.unsqueeze(k), self.B.unsqueeze(k))

    @property
    def pair(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.A, self.B

    def collapse_l(self) -> torch.Tensor:
        """[..., k, rdim] with AB == U @ collapse_l(): the row space, scaled by S."""
        return self.S[..., :, None] * self.Vh.transpose(-2, -1)

    def collapse_r(self) -> torch.Tensor:
        """[..., ldim, k] with AB == collapse_r() @ Vh.T."""
        return self.U * self.S[..., None, :]

    def make_even(self) -> FactoredMatrix:
        """The same product with balanced factors U sqrt(S) and sqrt(S) Vh^T."""
        root = self.S.sqrt()
        return FactoredMatrix(self.U * root[..., None, :], root[..., :, None] * self.Vh.transpose(-2, -1))

    def get_corner(self, k: int = 3) -> torch.Tensor:
        """The first k entries of every dimension of AB (leading dims too, as TransformerLens's
        `utils.get_corner`), without building the rest."""
        corner = self.A[..., :k, :] @ self.B[..., :, :k]
        return corner[(slice(k),) * corner.ndim]

    def __repr__(self) -> str:
        return f"FactoredMatrix(shape={tuple(self.shape)}, hidden_dim={self.mdim})"


def _keep_dim(index: object) -> object:
    """An int row / column index as a length-1 slice, so indexing keeps the matrix two-dimensional."""
    if isinstance(index, int):
        return slice(index, index + 1 if index != -1 else None)
    return index
