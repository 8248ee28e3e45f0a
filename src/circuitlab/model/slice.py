"""`Slice`: TransformerLens's one-dimension index (`pos_slice`, `batch_slice`, `neuron_slice`).

An int indexes (the dim goes), a tuple is `slice(*tuple)`, a `slice` is used as is, a list / tensor /
array picks those indices, and None leaves the tensor unchanged.
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np
import torch

SliceInput = Union[int, tuple, slice, list, torch.Tensor, np.ndarray, None]  # noqa: UP007 (public alias)


class Slice:
    """Index one dimension of a tensor: `Slice((1, 5)).apply(x, dim=-2)` is `x[..., 1:5, :]`."""

    def __init__(self, input_slice: SliceInput = None) -> None:
        if isinstance(input_slice, Slice):
            self.slice, self.mode = input_slice.slice, input_slice.mode
        elif isinstance(input_slice, tuple):
            self.slice, self.mode = slice(*input_slice), "slice"
        elif isinstance(input_slice, int | np.integer) and not isinstance(input_slice, bool):
            self.slice, self.mode = int(input_slice), "int"
        elif isinstance(input_slice, slice):
            self.slice, self.mode = input_slice, "slice"
        elif isinstance(input_slice, list | torch.Tensor | np.ndarray):
            array = (
                input_slice.detach().cpu().numpy() if isinstance(input_slice, torch.Tensor) else np.asarray(input_slice)
            )
            if array.ndim == 0:  # a 0-d tensor is an int index
                self.slice, self.mode = int(array), "int"
            else:
                self.slice, self.mode = array, "array"
        elif input_slice is None:
            self.slice, self.mode = slice(None), "identity"
        else:
            raise ValueError(
                f"invalid slice {input_slice!r}: expected an int, a tuple, a slice, a list / tensor / array of "
                "indices, or None"
            )

    def apply(self, tensor: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """`tensor` indexed along `dim` (negative dims count from the end)."""
        if self.mode == "identity":
            return tensor
        index: Any = self.slice
        if self.mode == "array":
            index = torch.as_tensor(index, device=tensor.device)
        return tensor[(slice(None),) * (dim % tensor.ndim) + (index,)]

    def indices(self, max_ctx: int | None = None) -> np.ndarray:
        """The indices this slice selects (int mode: a one-element array); needs `max_ctx` otherwise."""
        if self.mode == "int":
            return np.array([self.slice], dtype=np.int64)
        if max_ctx is None:
            raise ValueError("max_ctx must be given when the slice is not a single int")
        return np.arange(max_ctx, dtype=np.int64)[self.slice]

    @classmethod
    def unwrap(cls, slice_input: Slice | SliceInput) -> Slice:
        """A `Slice` from a Slice-like input; an int becomes [int] so the dimension is kept."""
        if isinstance(slice_input, Slice):
            return slice_input
        return cls([slice_input] if isinstance(slice_input, int) else slice_input)

    def __repr__(self) -> str:
        return f"Slice: {self.slice} Mode: {self.mode} "
