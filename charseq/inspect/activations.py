"""What a model computes on a text, character by character: every unit of every layer.

:func:`record_activations` runs a text through a :class:`~charseq.model.CharModel` one layer at
a time, each layer through the core's one loop over time (:func:`charseq.loop.unroll`) with its
cell's ``step`` wrapped to keep what it returns: the layer's output, each tensor of its state
and, for a cell that has them, its named :meth:`~charseq.Cell.internals` (an LSTM's gates). It
needs nothing from a cell's author: any cell that keeps the cell contract can be inspected.

Each recorded tensor is a :class:`Trace` of shape ``(T, U)``: one row per token, one column per
unit. A unit is named ``"layer:tensor:index"``, e.g. ``"1:c:42"`` (the LSTM cell state of the
second layer, unit 42). Beside the traces, :class:`Activations` keeps the model's next-token
distribution after every token and each token's log-probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import attrs
import numpy as np
import torch
from torch import Tensor

from charseq.errors import CharseqError
from charseq.interfaces import Cell, State
from charseq.loop import unroll
from charseq.model import CharModel, StackState, evaluating

Role = Literal["output", "state", "internal"]


@attrs.frozen(eq=False)
class Trace:
    """One recorded tensor of one layer, over a text.

    Attributes:
        layer: the layer, 0 for the bottom one.
        name: ``"h"``/``"c"`` (the cell's :attr:`~charseq.Cell.state_names`), ``"output"``, an
            internal's name (``"f"``), or ``"state0"``, ``"state1"``, ... for unnamed states.
            A state tensor equal to the output at every step (an LSTM's ``h``) is recorded once,
            as the output, under the state's name.
        role: ``"output"``, ``"state"`` or ``"internal"``.
        values: ``(T, U)`` float32: after each of the T tokens, U units (a state tensor with
            more than one dimension after the batch is flattened).
    """

    layer: int
    name: str
    role: Role
    values: np.ndarray

    @property
    def key(self) -> str:
        """``"layer:name"``, e.g. ``"0:c"``; with ``:index`` appended it names one unit."""
        return f"{self.layer}:{self.name}"

    @property
    def units(self) -> int:
        return self.values.shape[1]


@attrs.frozen(eq=False)
class Activations:
    """A text run through a model: every layer's units and the next-token distribution.

    Attributes:
        text: the text, as the tokens spell it.
        tokens: the text of each of the T tokens (characters, for the ``char`` tokenizer).
        ids: ``(T,)`` the token ids.
        traces: every recorded tensor, bottom layer first; in a layer, the output, then the
            state tensors, then the internals.
        probs: ``(T, V)`` float32: after token t, the model's distribution of token t + 1.
        logprobs: ``(T,)``: each token's natural-log probability given all before it (the first
            given the prime, or ``log 1/V`` without one, as :meth:`~charseq.Pipeline.score`).
        vocab: the text of each id, ``(V,)``.

    Example::

        >>> acts = pipe.activations("x = (1, 2)\\n")  # doctest: +SKIP
        >>> acts.unit("0:c:5")[:4]  # doctest: +SKIP
    """

    text: str
    tokens: tuple[str, ...]
    ids: np.ndarray
    traces: tuple[Trace, ...]
    probs: np.ndarray
    logprobs: np.ndarray
    vocab: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def surprise(self) -> np.ndarray:
        """``(T,)``: each token's surprise, ``-log p`` in nats."""
        return -self.logprobs

    def trace(self, key: str) -> Trace:
        """The trace named ``"layer:name"`` (e.g. ``"0:c"``)."""
        for trace in self.traces:
            if trace.key == key:
                return trace
        known = ", ".join(trace.key for trace in self.traces)
        raise CharseqError(f"no trace {key!r} in these activations; they have: {known}")

    def unit(self, address: str) -> np.ndarray:
        """``(T,)``: one unit's values, named ``"layer:name:index"`` (e.g. ``"1:c:42"``)."""
        key, _, index = address.rpartition(":")
        if not key or not index.isdigit():
            raise CharseqError(f"a unit is named layer:tensor:index, e.g. '0:h:3'; got {address!r}")
        trace = self.trace(key)
        if int(index) >= trace.units:
            raise CharseqError(
                f"unit {address!r}: {trace.key} has {trace.units} units (0 to {trace.units - 1})"
            )
        return trace.values[:, int(index)]

    def top(self, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` likeliest next tokens after each token: ids and probabilities, ``(T, k)``
        each, likeliest first."""
        k = min(k, self.probs.shape[1])
        order = np.argsort(-self.probs, axis=1, kind="stable")[:, :k]  # (T, V) -> (T, k)
        return order, np.take_along_axis(self.probs, order, axis=1)


class _Recorder(Cell):
    """A cell that runs another's ``step`` (and ``internals``) and keeps what each returns."""

    def __init__(self, cell: Cell) -> None:
        super().__init__(cell.input_size, cell.hidden_size)
        self.inner = cell
        self.steps: list[tuple[Tensor, State, dict[str, Tensor]]] = []

    def initial_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> State:
        return self.inner.initial_state(batch_size, device=device, dtype=dtype)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        internals = self.inner.internals(x_t, state)
        h_t, new_state = self.inner.step(x_t, state)
        self.steps.append((h_t, new_state, internals))
        return h_t, new_state


def _rows(tensors: Sequence[Tensor]) -> np.ndarray:
    """Per-step tensors ``(1, ...)`` to one ``(T, U)`` float32 array."""
    stacked = torch.cat([t.reshape(1, -1) for t in tensors])  # T x (1, ...) -> (T, U)
    return stacked.float().cpu().numpy()


def _layer_traces(layer: int, cell: Cell, recorder: _Recorder) -> list[Trace]:
    output = _rows([h for h, _, _ in recorder.steps])
    parts = len(recorder.steps[0][1])
    named = list(cell.state_names)[:parts]
    names = named + [f"state{i}" for i in range(len(named), parts)]
    traces = [Trace(layer, "output", "output", output)]
    for i, name in enumerate(names):
        values = _rows([state[i] for _, state, _ in recorder.steps])
        if traces[0].name == "output" and np.array_equal(values, output):
            # the output is this state (an LSTM's h): kept once, under the state's own name
            traces[0] = Trace(layer, name if i < len(named) else "output", "output", output)
        else:
            traces.append(Trace(layer, name, "state", values))
    for name in recorder.steps[0][2]:
        values = _rows([internals[name] for _, _, internals in recorder.steps])
        traces.append(Trace(layer, name, "internal", values))
    return traces


def _ids(values: Sequence[int], device: torch.device) -> Tensor:
    return torch.tensor(list(values), dtype=torch.long, device=device)


@torch.no_grad()
def record_activations(
    model: CharModel,
    ids: Sequence[int],
    *,
    prime_ids: Sequence[int] = (),
    tokens: Sequence[str],
    vocab: Sequence[str],
) -> Activations:
    """Run ``ids`` through ``model`` (in eval mode, batch of one) and record every layer.

    Args:
        model: the model; it is put back in the mode it was in.
        ids: the text's token ids (T of them, at least one).
        prime_ids: ids read first, unrecorded: the state and the first prediction start there.
        tokens: the text of each id in ``ids``; vocab: the text of each id of the vocabulary.

    Returns:
        The :class:`Activations`, their traces equal to what the model's step loop computes.
    """
    if len(ids) == 0:
        raise CharseqError("there is nothing to inspect: the text has no tokens")
    device = model.head.weight.device
    with evaluating(model):
        state: StackState = model.initial_state(1)
        first = torch.full((model.vocab_size,), -np.log(model.vocab_size), dtype=torch.float64)
        if len(prime_ids):
            logits, state = model(_ids(prime_ids, device)[None], state)  # (1, P, V)
            first = logits[0, -1].double().log_softmax(-1).cpu()
        x = model.embedding(_ids(ids, device)[None])  # (1, T) -> (1, T, E)
        traces: list[Trace] = []
        for layer, cell in enumerate(model.stack.cells):
            recorder = _Recorder(cell)
            x, _ = unroll(recorder, x, state[layer])  # (1, T, H)
            traces += _layer_traces(layer, cell, recorder)
        logits = model.head(x[0]).double()  # (T, V)
        logp = logits.log_softmax(-1).cpu()  # (T, V)
    targets = torch.tensor(list(ids), dtype=torch.long)
    logprobs = torch.cat([first[targets[:1]], logp[:-1].gather(1, targets[1:, None])[:, 0]])
    return Activations(
        text="".join(tokens),
        tokens=tuple(tokens),
        ids=targets.numpy(),
        traces=tuple(traces),
        probs=logp.exp().float().numpy(),
        logprobs=logprobs.numpy(),
        vocab=tuple(vocab),
    )
