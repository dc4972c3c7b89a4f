r"""One-step inference for the built-in cells on the CPU, in numpy, for one sequence at a time.

Generating one text advances one row by one step per character, where numpy is faster than
torch (:mod:`charseq.onerow` says why; ``torch.lstm_cell`` is about a dozen torch operations). So
on the CPU each built-in cell's :meth:`~charseq.interfaces.Cell.inference_step` is one of the
classes below: a snapshot of the cell's weights, laid out for the fewest operations, and a
``__call__`` that is ``step`` in numpy on 1-D arrays for a batch of one row:

- the input and the hidden state are multiplied by one matrix: ``[x, h, 1] @ W`` with
  ``W = [W_ih | W_hh | b_ih + b_hh]^T`` (the GRU keeps its two products apart, as its candidate
  gate needs ``W_hn h + b_hn`` alone);
- a sigmoid is computed as ``0.5 * tanh(z / 2) + 0.5``, with the halving folded into the
  snapshot's rows (exact in binary floating point), so the LSTM's four gates take one ``tanh``.

Batches of more rows (beam search, ``num_samples``) go through the cell's torch ``step``: there
the arithmetic dominates, torch's products are as fast as numpy's, and numpy's BLAS would start
threads of its own beside torch's (on two busy cores, beam search fell to ~85 characters a second
that way). The results equal the torch step's to float rounding (``charseq.testing`` checks
``inference_step`` against ``step``). Inputs and states go in and out as CPU tensors that share
memory with the numpy arrays; nothing here records gradients.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from charseq.interfaces import Cell, State
from charseq.onerow import NUMPY_DTYPES, numpy_dtype, row, vector

__all__ = ["GRUInference", "LSTMInference", "RNNInference", "supports"]


def supports(cell: Cell) -> bool:
    """Whether ``cell``'s weights are CPU tensors of one dtype numpy computes in."""
    return numpy_dtype(cell.parameters()) is not None


class CellInference:
    """A frozen copy of one built-in cell's weights and its one-row step in numpy.

    ``_matrix(weight_ih, weight_hh, bias)`` lays one product out: rows ``[W_ih^T; W_hh^T; b^T]``
    (the bias row only with bias), so ``[x, h, 1] @ matrix`` is ``W_ih x + W_hh h + b``.
    Subclasses write :meth:`vector_step`, the step of one row on 1-D arrays (the
    :class:`~charseq.onerow.VectorStep` a stack of them runs without tensors in between); a call
    on tensors converts one row to arrays and back, and runs the cell's own ``step`` for more.
    """

    def __init__(self, cell: Cell) -> None:
        self.hidden_size = cell.hidden_size
        self.bias = bool(getattr(cell, "bias", True))
        self.step = cell.step
        self._one = np.ones(1, dtype=NUMPY_DTYPES[cell.weight_ih.dtype])

    def __call__(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        if x_t.shape[0] != 1:
            return self.step(x_t, state)
        h, arrays = self.vector_step(vector(x_t), tuple(vector(s) for s in state))
        return row(h), tuple(row(a) for a in arrays)

    def vector_step(
        self, x: np.ndarray, state: tuple[np.ndarray, ...]
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """``step`` for one row: ``x`` ``(I,)`` and the state's rows to ``h`` ``(H,)`` and the
        new state's rows."""
        raise NotImplementedError

    def _matrix(
        self, *parts: Tensor | None, halve: int = 0, order: np.ndarray | None = None
    ) -> np.ndarray:
        """Torch-layout parts ``(G*H, width)`` or ``(G*H,)`` (``None`` skipped) side by side,
        transposed to ``(sum of widths, G*H)``: their rows taken in ``order`` if given, then
        the first ``halve`` columns (sigmoid gates) halved. Built in numpy (a fraction of
        torch's time for these copies)."""
        arrays = [p.detach().numpy().reshape(p.shape[0], -1) for p in parts if p is not None]
        rows = arrays[0].shape[0]
        matrix = np.empty((sum(a.shape[1] for a in arrays), rows), dtype=arrays[0].dtype)
        start = 0
        for a in arrays:  # (G*H, width) -> rows start:start+width of (W, G*H)
            matrix[start : start + a.shape[1]] = (a if order is None else a[order]).T
            start += a.shape[1]
        matrix[:, :halve] *= 0.5
        return matrix

    def _with_one(self, *vectors: np.ndarray) -> np.ndarray:
        """``vectors`` end to end, and a 1 when the cell has a bias: ``(n,)``."""
        return np.concatenate((*vectors, self._one) if self.bias else vectors)


def _sigmoid_from_halved(z: np.ndarray) -> None:
    """In place: ``z`` holds ``tanh(a / 2)``; leaves ``sigmoid(a) = 0.5 * tanh(a / 2) + 0.5``."""
    z *= 0.5
    z += 0.5


class RNNInference(CellInference):
    r""":math:`h' = \tanh([x, h, 1] W)`."""

    def __init__(self, cell: Cell) -> None:
        super().__init__(cell)
        bias = cell.bias_ih + cell.bias_hh if self.bias else None
        self.matrix = self._matrix(cell.weight_ih, cell.weight_hh, bias)  # (I+H+1, H)

    def vector_step(
        self, x: np.ndarray, state: tuple[np.ndarray, ...]
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        (h,) = state
        h = np.dot(self._with_one(x, h), self.matrix)  # (I+H+1,) -> (H,)
        np.tanh(h, out=h)
        return h, (h,)


class LSTMInference(CellInference):
    r"""The LSTM step with its gates reordered to ``i, f, o, g``: one product, one ``tanh``.

    .. math::

        z = [x, h, 1] W,\quad (i, f, o) = \sigma(z_{ifo}),\quad g = \tanh(z_g),\quad
        c' = f \odot c + i \odot g,\quad h' = o \odot \tanh(c')
    """

    def __init__(self, cell: Cell) -> None:
        super().__init__(cell)
        H = self.hidden_size
        # torch's gate order is i, f, g, o; put the sigmoid gates first: i, f, o, g.
        order = np.r_[: 2 * H, 3 * H : 4 * H, 2 * H : 3 * H]
        bias = cell.bias_ih + cell.bias_hh if self.bias else None
        self.matrix = self._matrix(
            cell.weight_ih, cell.weight_hh, bias, halve=3 * H, order=order
        )  # (I+H+1, 4H)

    def vector_step(
        self, x: np.ndarray, state: tuple[np.ndarray, ...]
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        h, c = state
        H = self.hidden_size
        gates = np.dot(self._with_one(x, h), self.matrix)  # (I+H+1,) -> (4H,): i, f, o, g
        np.tanh(gates, out=gates)
        _sigmoid_from_halved(gates[: 3 * H])  # i, f, o; the halving is in the matrix
        c = gates[H : 2 * H] * c  # f * c
        c += gates[:H] * gates[3 * H :]  # + i * g
        h = np.tanh(c)
        h *= gates[2 * H : 3 * H]  # o * tanh(c')
        return h, (h, c)


class GRUInference(CellInference):
    r"""The GRU step as two products, since the candidate needs :math:`W_{hn} h + b_{hn}` alone.

    .. math::

        a = [x, 1] W_i,\quad b = [h, 1] W_h,\quad (r, z) = \sigma(a_{rz} + b_{rz}),\quad
        n = \tanh(a_n + r \odot b_n),\quad h' = n + z \odot (h - n)
    """

    def __init__(self, cell: Cell) -> None:
        super().__init__(cell)
        H = self.hidden_size
        b_ih, b_hh = (cell.bias_ih, cell.bias_hh) if self.bias else (None, None)
        self.input_matrix = self._matrix(cell.weight_ih, b_ih, halve=2 * H)  # (I+1, 3H)
        self.hidden_matrix = self._matrix(cell.weight_hh, b_hh, halve=2 * H)  # (H+1, 3H)

    def vector_step(
        self, x: np.ndarray, state: tuple[np.ndarray, ...]
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        (h,) = state
        H = self.hidden_size
        a = np.dot(self._with_one(x), self.input_matrix)  # (I+1,) -> (3H,): r, z, n
        b = np.dot(self._with_one(h), self.hidden_matrix)  # (H+1,) -> (3H,)
        rz = a[: 2 * H]
        rz += b[: 2 * H]
        np.tanh(rz, out=rz)
        _sigmoid_from_halved(rz)
        n = b[2 * H :] * rz[:H]  # r * (W_hn h + b_hn)
        n += a[2 * H :]
        np.tanh(n, out=n)
        out = h - n
        out *= rz[H:]  # z * (h - n)
        out += n
        return out, (out,)
