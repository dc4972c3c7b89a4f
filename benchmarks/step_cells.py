"""What a plugin author writes: an LSTM as one ``step`` of plain torch ops, registered as
``step-lstm``. The speed benchmarks compare it with the built-in ``lstm`` (fused kernels) and
plain PyTorch, to measure what the core makes of a cell it knows nothing about."""

from __future__ import annotations

import torch
from torch import Tensor, nn

import charseq


class StepLSTMCell(charseq.Cell):
    """An LSTM written as one time step (gate order i, f, g, o), with nothing fused."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.input = nn.Linear(input_size, 4 * hidden_size)
        self.recurrent = nn.Linear(hidden_size, 4 * hidden_size)

    def initial_state(self, batch_size, device=None, dtype=None):
        h = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return (h, torch.zeros_like(h))

    def step(self, x_t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        h, c = state  # (B, H) each
        i, f, g, o = (self.input(x_t) + self.recurrent(h)).chunk(4, dim=1)  # 4 x (B, H)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


@charseq.hookimpl
def charseq_register_cells(registry):
    registry.add("step-lstm", StepLSTMCell, help="an LSTM written as one step (benchmarks)")
