"""One row in numpy: how generation runs a batch of one sequence on the CPU.

Generating one text advances one row by one step per character. At that size a torch operation
costs its dispatch more than its arithmetic (2-5 us on a CPU in a tight loop, two to three
times that between other work, as in a decoding loop), and numpy's about 1 us; numpy's
matrix-vector product on 1-D arrays is also faster than torch's one-row matrix product. So on
the CPU :meth:`CharModel.inference_step <charseq.model.CharModel.inference_step>` looks up the
embedding and applies the head in numpy for one row, and the built-in cells step in numpy
(:mod:`charseq.builtins.inference`).

A cell's inference step that also has a :class:`VectorStep`'s ``vector_step`` takes one row as
1-D arrays. When every layer's has one, the stack passes arrays from layer to layer and turns
only the new state into tensors; otherwise each layer gets tensors. Tensors and arrays share
memory across the boundary (:func:`vector`, :func:`row`), so crossing it copies nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

NUMPY_DTYPES: dict[torch.dtype, type[np.floating]] = {
    torch.float32: np.float32,
    torch.float64: np.float64,
}
"""The torch dtypes numpy computes in, and numpy's names for them."""


def numpy_dtype(tensors: Iterable[Tensor | None]) -> type[np.floating] | None:
    """The numpy dtype of ``tensors`` (``None`` entries skipped) if they are all CPU tensors of
    one dtype in :data:`NUMPY_DTYPES`, else ``None``."""
    present = [t for t in tensors if t is not None]
    dtypes = {t.dtype for t in present}
    if len(dtypes) != 1 or any(t.device.type != "cpu" for t in present):
        return None
    return NUMPY_DTYPES.get(dtypes.pop())


def vector(t: Tensor) -> np.ndarray:
    """A one-row CPU tensor ``(1, n)`` as a 1-D array ``(n,)`` sharing its memory."""
    return (t.detach() if t.requires_grad else t).numpy()[0]


def row(v: np.ndarray) -> Tensor:
    """A 1-D array ``(n,)`` as a one-row tensor ``(1, n)`` sharing its memory."""
    return torch.from_numpy(v[None])


@runtime_checkable
class VectorStep(Protocol):
    """An inference step that also runs one row on 1-D numpy arrays."""

    def vector_step(
        self, x: np.ndarray, state: tuple[np.ndarray, ...]
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """``x`` ``(I,)`` and the rows of the state's tensors to ``h`` ``(H,)`` and the new
        state's rows; equal to the step on one-row tensors."""
        ...
