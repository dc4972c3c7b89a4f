"""The one loop over time, and the few things the core does to a state.

Every cell that writes only ``step`` runs through :func:`unroll`. The core looks inside a state
only to batch, select rows (beam search) and detach (truncated backpropagation through time).
"""

from __future__ import annotations

import torch
from torch import Tensor

from charseq.interfaces import Cell, State


def unroll(cell: Cell, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
    """Run ``cell.step`` over the time dimension of ``x``.

    Args:
        cell: the cell to run.
        x: inputs of shape ``(B, T, I)``.
        state: the state before the first step; ``cell.initial_state`` when ``None``.

    Returns:
        ``(outputs, state)`` with outputs of shape ``(B, T, H)`` and the state after the last step.
    """
    if state is None:
        state = cell.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
    outputs = []
    for x_t in x.unbind(dim=1):  # T tensors of (B, I)
        h_t, state = cell.step(x_t, state)
        outputs.append(h_t)
    if not outputs:
        return x.new_zeros(x.shape[0], 0, cell.hidden_size), state
    return torch.stack(outputs, dim=1), state  # (B, T, H)


def detach_state(state: State) -> State:
    """Cut the graph behind a state (truncated BPTT), keeping its values."""
    return tuple(s.detach() for s in state)


def select_state(state: State, index: Tensor) -> State:
    """Rows ``index`` of every tensor in ``state`` (reorders or repeats sequences, as beams do)."""
    return tuple(s.index_select(0, index) for s in state)
