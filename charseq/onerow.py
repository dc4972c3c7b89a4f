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

:class:`ModelInferenceStep` and :class:`StackInferenceStep` are the model's and the stack's
inference steps that do this.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from charseq.interfaces import State

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


# -- a model's inference step ---------------------------------------------------------------------


class StackInferenceStep:
    """:meth:`CellStack.step <charseq.model.CellStack.step>` over the layers' inference steps.

    When every layer's step is a :class:`VectorStep`, :meth:`vector_call` runs one row as arrays
    from layer to layer, and keeps the arrays of the state it returned last: the decoder passes
    that state back, so only the new state is turned into tensors.

    Args:
        steps: each layer's :meth:`~charseq.interfaces.Cell.inference_step`, bottom first.
    """

    def __init__(self, steps: list[Callable[[Tensor, State], tuple[Tensor, State]]]) -> None:
        self.steps = steps
        self.vectors = all(isinstance(step, VectorStep) for step in steps)
        self._last: tuple[tuple[State, ...], list[tuple[np.ndarray, ...]]] | None = None

    def __call__(self, x_t: Tensor, state: list[State]) -> tuple[Tensor, list[State]]:
        if self.vectors and x_t.shape[0] == 1 and x_t.device.type == "cpu":
            h, state = self.vector_call(vector(x_t), state)
            return row(h), state
        self._check(state)
        new_state = []
        for layer_step, layer_state in zip(self.steps, state, strict=True):
            x_t, layer_state = layer_step(x_t, layer_state)  # (B, H_i)
            new_state.append(layer_state)
        return x_t, new_state

    def vector_call(self, x: np.ndarray, state: list[State]) -> tuple[np.ndarray, list[State]]:
        """One row: ``x`` ``(I,)`` and a one-row state to ``h`` ``(H,)`` and the new state."""
        if self._last is not None and _same(self._last[0], state):
            arrays = self._last[1]  # the state returned last: its tensors share these arrays
        else:
            self._check(state)
            arrays = [tuple(vector(t) for t in layer) for layer in state]
        new_arrays = []
        for layer_step, layer_arrays in zip(self.steps, arrays, strict=True):
            x, layer_arrays = layer_step.vector_step(x, layer_arrays)  # (H_i,)
            new_arrays.append(layer_arrays)
        new_state = [tuple([row(a) for a in layer]) for layer in new_arrays]
        self._last = (tuple(new_state), new_arrays)  # a copy: the list may be changed
        return x, new_state

    def _check(self, state: list[State]) -> None:
        if len(state) != len(self.steps):
            raise ValueError(f"expected a state for each of {len(self.steps)} layers")


def _same(kept: tuple[State, ...], state: list[State]) -> bool:
    """Whether ``state`` holds the very layer states of ``kept`` (a list can be changed in place;
    a layer's tuple cannot)."""
    return len(kept) == len(state) and all(a is b for a, b in zip(kept, state, strict=True))


class ModelInferenceStep:
    """:meth:`CharModel.step <charseq.model.CharModel.step>` over frozen weights: embedding ->
    ``stack_step`` -> head, with one row on the CPU looked up and projected in numpy.

    Args:
        embedding: the embedding table ``(V, E)``.
        stack_step: the stack's inference step (a :class:`StackInferenceStep` passes one row's
            arrays from layer to layer).
        head: the output layer, ``H`` to ``V``.
    """

    def __init__(
        self,
        embedding: Tensor,
        stack_step: Callable[[Tensor, list[State]], tuple[Tensor, list[State]]],
        head: nn.Linear,
    ) -> None:
        self.embedding = embedding.detach()  # (V, E)
        self.weight = head.weight.detach()  # (V, H)
        self.bias = None if head.bias is None else head.bias.detach()  # (V,)
        self.stack_step = stack_step
        vectors = isinstance(stack_step, StackInferenceStep) and stack_step.vectors
        self.vector_call = stack_step.vector_call if vectors else None  # arrays layer to layer
        self.numpy = numpy_dtype([self.embedding, self.weight, self.bias]) is not None
        if self.numpy:
            self.table = self.embedding.numpy()  # (V, E)
            self.weight_t = self.weight.numpy().T  # (V, H) -> (H, V), a view
            self.bias_array = None if self.bias is None else self.bias.numpy()  # (V,)

    def __call__(self, ids: Tensor, state: list[State]) -> tuple[Tensor, list[State]]:
        if not (self.numpy and ids.shape[0] == 1):
            x = nn.functional.embedding(ids, self.embedding)  # (B,) -> (B, E)
            h, state = self.stack_step(x, state)  # (B, H)
            return nn.functional.linear(h, self.weight, self.bias), state  # (B, V)
        index = int(ids)
        if not 0 <= index < len(self.table):
            raise IndexError(f"token id {index} is out of range for {len(self.table)} ids")
        x = self.table[index]  # (E,), a view of the embedding (vector steps only read it)
        if self.vector_call is not None:
            h, state = self.vector_call(x, state)  # (H,)
        else:
            # a copy: a layer's torch step may write into its input, which is not the table's
            h_t, state = self.stack_step(row(x.copy()), state)  # (1, E) -> (1, H)
            h = vector(h_t)
        logits = np.dot(h, self.weight_t)  # (H,) -> (V,)
        if self.bias_array is not None:
            logits += self.bias_array
        return row(logits), state  # (1, V)
