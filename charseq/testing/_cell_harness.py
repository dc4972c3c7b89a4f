"""How the cell checks run a cell: build it, give it a state, draw sizes, take gradients.

The agreement checks run two paths over the same input (a fused ``forward`` and the step loop,
a fused stack and its layers, compiled and eager) and compare what comes out, gradients
included; :func:`run_with_grads` is that run, once for every path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from hypothesis import given
from torch import Tensor, nn

from charseq.interfaces import Cell, State
from charseq.loop import unroll
from charseq.testing._base import Subject, describe, kit_settings, require
from charseq.testing.strategies import CellDims, cell_dims, seeds

__all__ = [
    "F64",
    "FIX_STATE",
    "StepLoop",
    "check_state",
    "flatten",
    "for_drawn",
    "grads",
    "leaves",
    "loss",
    "make_cell",
    "random_state",
    "run_with_grads",
    "unflatten",
]

F64 = torch.float64

FIX_STATE = (
    "initial_state(batch_size, device, dtype) and step(x_t, state) must return the state as a "
    "tuple of tensors with the batch on dimension 0, e.g. (h,) or (h, c), every step the same "
    "shapes."
)


def make_cell(
    subject: Subject, input_size: int, hidden_size: int, dtype: torch.dtype, seed: int = 0
) -> Cell:
    """The subject's cell built after ``torch.manual_seed(seed)``, in ``dtype`` and eval mode."""
    torch.manual_seed(seed)
    return subject.build_checked(input_size, hidden_size).to(dtype).eval()


def check_state(state: Any, batch: int, where: str) -> State:
    """``state`` if it is a tuple of tensors with the batch first, else a :class:`CheckError`."""
    require(
        isinstance(state, tuple) and all(isinstance(s, Tensor) for s in state),
        f"{where} returned a state of type {describe(state)}, not a tuple of tensors",
        FIX_STATE,
    )
    for i, s in enumerate(state):
        require(
            s.dim() >= 1 and s.shape[0] == batch,
            f"{where}: state[{i}] has shape {tuple(s.shape)}; the batch ({batch}) must come first",
            FIX_STATE,
        )
    return state


def random_state(cell: Cell, batch: int, dtype: torch.dtype, gen: torch.Generator) -> State:
    """A non-zero state with the structure of ``initial_state`` (zeros would hide bugs)."""
    state = check_state(
        cell.initial_state(batch, device="cpu", dtype=dtype), batch, "initial_state"
    )
    return tuple(
        torch.randn(s.shape, dtype=s.dtype, generator=gen) * 0.5 if s.is_floating_point() else s
        for s in state
    )


def for_drawn(test: Callable[[CellDims, int], None], **limits: Any) -> None:
    """Run ``test(dims, seed)`` over Hypothesis draws (examples from the active profile)."""

    @kit_settings()
    @given(dims=cell_dims(**limits), seed=seeds())
    def drawn(dims: CellDims, seed: int) -> None:
        test(dims, seed)

    drawn()


# -- gradients ------------------------------------------------------------------------------------


def flatten(state: Any) -> list[Tensor]:
    """The tensors of a state (a tuple of tensors) or of a stack's states (a list of them)."""
    if isinstance(state, Tensor):
        return [state]
    return [t for part in state for t in flatten(part)]


def unflatten(template: Any, tensors: Iterator[Tensor]) -> Any:
    """``template``'s structure with its floating-point tensors taken in turn from ``tensors``
    (one per tensor of ``template``, as :func:`flatten` lists them; the others stay as they
    are)."""
    if isinstance(template, Tensor):
        tensor = next(tensors)
        return tensor if template.is_floating_point() else template
    return type(template)(unflatten(part, tensors) for part in template)


def leaves(tensors: Sequence[Tensor]) -> list[Tensor]:
    """Fresh copies of ``tensors``; the floating-point ones require grad."""
    return [t.detach().clone().requires_grad_(t.is_floating_point()) for t in tensors]


def grads(total: Tensor, inputs: Sequence[Tensor]) -> list[Tensor]:
    """The gradients of ``total`` for the ``inputs`` that require grad (zeros where unused)."""
    wanted = [t for t in inputs if t.requires_grad]
    found = torch.autograd.grad(total, wanted, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(wanted, found, strict=True)]


def loss(outputs: Tensor, state: Sequence[Tensor], gen: torch.Generator) -> Tensor:
    """A random linear function of everything a cell returns, so every gradient counts."""
    total = (outputs * torch.randn(outputs.shape, dtype=outputs.dtype, generator=gen)).sum()
    for s in state:
        if s.is_floating_point():
            total = total + (s * torch.randn(s.shape, dtype=s.dtype, generator=gen)).sum()
    return total


def run_with_grads(
    run: Callable[[Tensor, Any], tuple[Tensor, Any]],
    x: Tensor,
    state: Any,
    params: Sequence[Tensor],
    seed: int,
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Run ``run(x, state)`` from fresh copies of ``x`` and ``state`` and take gradients.

    ``state`` is a cell's state or a list of per-layer states. The loss is :func:`loss` with a
    generator seeded with ``seed``, so two paths given the same seed get the same loss.

    Returns:
        The outputs, the final state's tensors (:func:`flatten`), both detached, and the
        gradients with respect to ``x``, the floating-point state tensors and ``params``.
    """
    x_leaf, *state_leaves = leaves([x, *flatten(state)])
    out, final = run(x_leaf, unflatten(state, iter(state_leaves)))
    final_tensors = flatten(final)
    total = loss(out, final_tensors, torch.Generator().manual_seed(seed))
    return (
        out.detach(),
        [s.detach() for s in final_tensors],
        grads(total, [x_leaf, *state_leaves, *params]),
    )


class StepLoop(nn.Module):
    """Runs a cell through the core's loop, so functional_call can swap its parameters."""

    def __init__(self, cell: Cell) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        return unroll(self.cell, x, state)
