r"""One-step inference for the built-in cells on the CPU, in numpy.

Generating text advances a handful of rows by one step per character. At that size a torch
operation costs its dispatch (2-4 us on a CPU) more than its arithmetic, and ``torch.lstm_cell``
is about a dozen of them; numpy's operations cost about 1 us each and its matrix-vector
product is faster at one row. So on the CPU each built-in cell's
:meth:`~charseq.interfaces.Cell.inference_step` is one of the classes below: a snapshot of the
cell's weights, laid out for the fewest operations, and a ``__call__`` that is ``step`` in numpy:

- the input and the hidden state are multiplied by one matrix: ``[x, h, 1] @ W`` with
  ``W = [W_ih | W_hh | b_ih + b_hh]^T`` (the GRU keeps its two products apart, as its candidate
  gate needs ``W_hn h + b_hn`` alone);
- a sigmoid is computed as ``0.5 * tanh(z / 2) + 0.5``, with the halving folded into the
  snapshot's rows (exact in binary floating point), so the LSTM's four gates take one ``tanh``.

The results equal the torch step's to float rounding (``charseq.testing`` checks
``inference_step`` against ``step``). Inputs and states go in and out as CPU tensors that share
memory with the numpy arrays; nothing here records gradients.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from charseq.interfaces import Cell, State

__all__ = ["GRUInference", "LSTMInference", "RNNInference", "supports"]

NUMPY_DTYPES = (torch.float32, torch.float64)


def supports(cell: Cell) -> bool:
    """Whether ``cell``'s weights are CPU tensors of a dtype numpy computes in."""
    return all(p.device.type == "cpu" and p.dtype in NUMPY_DTYPES for p in cell.parameters())


class _Inference:
    """A frozen copy of one built-in cell's weights and its step in numpy.

    ``_matrix(weight_ih, weight_hh, bias)`` lays one product out: rows ``[W_ih^T; W_hh^T; b^T]``
    (the bias row only with bias), so ``[x, h, 1] @ matrix`` is ``W_ih x + W_hh h + b`` for a
    whole batch at once. Subclasses write ``__call__(x_t, state) -> (h_t, state)``.
    """

    def __init__(self, cell: Cell) -> None:
        self.hidden_size = cell.hidden_size
        self.bias = bool(getattr(cell, "bias", True))
        self._ones: dict[int, np.ndarray] = {}  # batch size -> the (B, 1) column of ones

    def _matrix(self, *parts: Tensor | None, halve: int = 0) -> Tensor:
        """Torch-layout parts ``(G*H, width)`` or ``(G*H,)`` (``None`` skipped) side by side,
        transposed to ``(sum of widths, G*H)``; the first ``halve`` columns (sigmoid gates)
        halved."""
        with torch.no_grad():
            columns = [p.detach().reshape(p.shape[0], -1) for p in parts if p is not None]
            matrix = torch.cat(columns, dim=1).T.contiguous()  # (G*H, I+H+1) -> (I+H+1, G*H)
            matrix[:, :halve] *= 0.5
        return matrix

    def _with_ones(self, *arrays: np.ndarray) -> np.ndarray:
        """``arrays`` side by side, plus a column of ones when the cell has a bias: ``(B, *)``."""
        if not self.bias:
            return np.concatenate(arrays, axis=1)
        batch = arrays[0].shape[0]
        ones = self._ones.get(batch)
        if ones is None:
            ones = self._ones[batch] = np.ones((batch, 1), dtype=arrays[0].dtype)
        return np.concatenate((*arrays, ones), axis=1)


def _array(t: Tensor) -> np.ndarray:
    return t.detach().numpy()


def _product(a: np.ndarray, matrix: Tensor) -> np.ndarray:
    """``a @ matrix``: by numpy for one row (its vector product is the faster there), by torch
    for more (numpy's BLAS would start threads of its own beside torch's, which on a busy CPU
    costs milliseconds a step)."""
    if a.shape[0] == 1:
        return a @ matrix.numpy()
    return torch.mm(torch.from_numpy(a), matrix).numpy()


def _sigmoid_from_halved(z: np.ndarray) -> None:
    """In place: ``z`` holds ``tanh(a / 2)``; leaves ``sigmoid(a) = 0.5 * tanh(a / 2) + 0.5``."""
    z *= 0.5
    z += 0.5


class RNNInference(_Inference):
    r""":math:`h' = \tanh([x, h, 1] W)`."""

    def __init__(self, cell: Cell) -> None:
        super().__init__(cell)
        bias = cell.bias_ih + cell.bias_hh if self.bias else None
        self.matrix = self._matrix(cell.weight_ih, cell.weight_hh, bias)  # (I+H+1, H)

    def __call__(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        out = _product(self._with_ones(_array(x_t), _array(h)), self.matrix)  # (B, H)
        np.tanh(out, out=out)
        h = torch.from_numpy(out)
        return h, (h,)


class LSTMInference(_Inference):
    r"""The LSTM step with its gates reordered to ``i, f, o, g``: one product, one ``tanh``.

    .. math::

        z = [x, h, 1] W,\quad (i, f, o) = \sigma(z_{ifo}),\quad g = \tanh(z_g),\quad
        c' = f \odot c + i \odot g,\quad h' = o \odot \tanh(c')
    """

    def __init__(self, cell: Cell) -> None:
        super().__init__(cell)
        H = self.hidden_size
        # torch's gate order is i, f, g, o; put the sigmoid gates first: i, f, o, g.
        order = torch.cat(
            [torch.arange(2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)]
        )
        bias = (cell.bias_ih + cell.bias_hh)[order] if self.bias else None
        self.matrix = self._matrix(
            cell.weight_ih[order], cell.weight_hh[order], bias, halve=3 * H
        )  # (I+H+1, 4H)

    def __call__(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state
        H = self.hidden_size
        gates = _product(self._with_ones(_array(x_t), _array(h)), self.matrix)  # (B, 4H)
        np.tanh(gates, out=gates)
        _sigmoid_from_halved(gates[:, : 3 * H])
        c = gates[:, H : 2 * H] * _array(c)  # f * c
        c += gates[:, :H] * gates[:, 3 * H :]  # + i * g
        h = np.tanh(c)
        h *= gates[:, 2 * H : 3 * H]  # o * tanh(c')
        h_t = torch.from_numpy(h)
        return h_t, (h_t, torch.from_numpy(c))


class GRUInference(_Inference):
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

    def __call__(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        H = self.hidden_size
        h_prev = _array(h)
        a = _product(self._with_ones(_array(x_t)), self.input_matrix)  # (B, 3H): r, z, n
        b = _product(self._with_ones(h_prev), self.hidden_matrix)  # (B, 3H)
        rz = a[:, : 2 * H]
        rz += b[:, : 2 * H]
        np.tanh(rz, out=rz)
        _sigmoid_from_halved(rz)
        n = b[:, 2 * H :] * rz[:, :H]  # r * (W_hn h + b_hn)
        n += a[:, 2 * H :]
        np.tanh(n, out=n)
        out = h_prev - n
        out *= rz[:, H:]  # z * (h - n)
        out += n
        h_t = torch.from_numpy(out)
        return h_t, (h_t,)
