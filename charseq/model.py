"""The model: embedding -> stacked cells (dropout between them) -> linear head.

``CellStack`` is where cells meet the core. A stack whose cells are all of one class that offers
a fused multi-layer kernel runs it: the classmethod ``forward_stack(cells, x, state, dropout,
training)`` returns ``(outputs, state)``, or ``None`` to decline a stack it cannot fuse (the
built-in cells run torch's cuDNN / oneDNN kernels this way). Any other stack runs layer by
layer, each layer through its own ``forward`` (which, for a cell that writes only ``step``, is
the core's one loop over time).

Two regularisers apply to any cell (``docs/how-to/regularise.md``): weight drop masks each
cell's :attr:`~charseq.interfaces.Cell.recurrent_weights` once per forward call, and locked
(variational) dropout draws one mask per sequence, the same at every time step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from charseq import onerow
from charseq.errors import CharseqError
from charseq.interfaces import Cell, State
from charseq.loop import detach_state, select_state

StackState = list[State]
"""One state per layer."""

DropoutKind = Literal["standard", "locked"]
"""How dropout masks sequences: ``"standard"`` draws a new mask for every element at every time
step; ``"locked"`` (variational, Gal & Ghahramani 2016) one mask per sequence, the same at every
time step."""

DROPOUT_KINDS: tuple[DropoutKind, ...] = get_args(DropoutKind)


def locked_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Variational dropout of ``x (B, T, F)``: one Bernoulli mask ``(B, 1, F)`` per call, kept
    with probability ``1 - p`` and scaled by ``1 / (1 - p)``, broadcast over all T time steps.
    ``x`` itself where not training or ``p == 0``. The mask comes from torch's global generator
    (so a checkpoint's RNG state resumes it exactly)."""
    if not training or p == 0.0:
        return x
    mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1.0 - p)  # (B, 1, F)
    return x * mask.div_(1.0 - p)


def sequence_dropout(x: Tensor, p: float, training: bool, kind: DropoutKind) -> Tensor:
    """Dropout of ``x (B, T, F)`` of the given kind: ``"standard"`` is
    :func:`torch.nn.functional.dropout`, ``"locked"`` is :func:`locked_dropout`."""
    if kind == "locked":
        return locked_dropout(x, p, training)
    return nn.functional.dropout(x, p, training)


class WeightDropError(CharseqError, ValueError):
    """Weight drop asked of a cell that names no recurrent weights (or names ones it lacks)."""


def _recurrent_weights(cell: Cell, layer: int, weight_drop: float) -> tuple[str, ...]:
    """The names ``cell`` gives in ``recurrent_weights``, checked to be its parameters."""
    kind = type(cell)
    names = tuple(getattr(kind, "recurrent_weights", ()))
    what = f"cell {kind.__qualname__} (from {kind.__module__}; layer {layer})"
    if not names:
        raise WeightDropError(
            f"{what} names no recurrent weights, so weight_drop={weight_drop} has nothing to "
            "drop; set weight_drop = 0, or name the parameters that multiply the previous state "
            'in the cell class, e.g. recurrent_weights = ("weight_hh",)'
        )
    own = dict(cell.named_parameters())
    missing = [name for name in names if name not in own]
    if missing:
        raise WeightDropError(
            f"{what} names recurrent_weights {names}, but has no parameter "
            f"{', '.join(map(repr, missing))} (its parameters: {', '.join(own) or 'none'})"
        )
    return names


class CellContractError(CharseqError, ValueError):
    """A cell breaks the shape contract (found by the one probe a :class:`CellStack` runs when
    it is built, before any training or generation)."""


_KIT = (
    "charseq.testing.{check} catches this: run the conformance kit in the plugin's tests "
    "(parametrize_with_checks or check_component)"
)


def _shapes(state: Any) -> str:
    if isinstance(state, tuple) and all(isinstance(s, Tensor) for s in state):
        return "(" + ", ".join(str(tuple(s.shape)) for s in state) + ")"
    return type(state).__name__


def probe_cell(cell: Cell, layer: int = 0) -> None:
    """Run one step of ``cell`` on a batch of 2 zero rows and check what comes back: an output
    ``(2, hidden_size)`` and a state (a tuple of tensors) of the shapes ``initial_state(2)``
    has, each ``(2, ...)``.

    Raises:
        CellContractError: naming the cell, the expected and actual shapes, and the kit check
            that would have caught it.
    """
    batch, size = 2, cell.hidden_size
    first = next(iter(cell.parameters()), None)
    floating = first is not None and first.is_floating_point()
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if floating else torch.get_default_dtype()
    kind = type(cell)
    what = (
        f"cell {kind.__qualname__} (from {kind.__module__}; layer {layer}, "
        f"input_size {cell.input_size}, hidden_size {size})"
    )
    x = torch.zeros(batch, cell.input_size, device=device, dtype=dtype)
    with torch.no_grad(), torch.random.fork_rng([device] if device.type == "cuda" else []):
        try:
            state = cell.initial_state(batch, device=device, dtype=dtype)
            h, new_state = cell.step(x, state)
        except Exception as error:
            first_line = (str(error).strip().splitlines() or [""])[0]
            raise CellContractError(
                f"{what}: step(x_t {tuple(x.shape)}, initial_state({batch})) raised "
                f"{type(error).__name__}: {first_line}. " + _KIT.format(check="check_cell_api")
            ) from error
    _require_output(
        h, (batch, size), f"{what}: step(x_t {tuple(x.shape)}, state)", "check_cell_api"
    )
    expected = _shapes(state)
    good = isinstance(state, tuple) and all(isinstance(s, Tensor) for s in state)
    good = good and all(s.shape[:1] == (batch,) for s in state)
    if not good or _shapes(new_state) != expected:
        raise CellContractError(
            f"{what}: initial_state({batch}) gave a state {expected} and step returned "
            f"{_shapes(new_state)}; expected a tuple of tensors of one set of shapes, each "
            f"({batch}, ...). " + _KIT.format(check="check_cell_api")
        )
    if kind.forward is not Cell.forward and not kind.__module__.startswith("charseq."):
        x = x.unsqueeze(1)  # (B, I) -> (B, 1, I): one step of the cell's own forward
        with torch.no_grad(), torch.random.fork_rng([device] if device.type == "cuda" else []):
            out, _ = cell(x, state)
        _require_output(
            out, (batch, 1, size), f"{what}: forward(x {tuple(x.shape)})", "check_shapes"
        )


def _require_output(out: Any, expected: tuple[int, ...], call: str, check: str) -> None:
    if not isinstance(out, Tensor) or tuple(out.shape) != expected:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        layout = "(batch, hidden_size)" if len(expected) == 2 else "(batch, time, hidden_size)"
        raise CellContractError(
            f"{call} returned an output of shape {got}; expected {expected}, {layout}. "
            + _KIT.format(check=check)
        )


class CellStack(nn.Module):
    """Cells stacked in depth, with dropout between layers.

    Args:
        cells: the layers, bottom first; layer ``i + 1``'s input size is layer ``i``'s hidden size.
        dropout: probability of zeroing an element between layers (not after the last one).
        fused: use the cells' fused multi-layer kernel when they offer one.
        weight_drop: probability of zeroing an entry of each cell's recurrent weights
            (:attr:`~charseq.interfaces.Cell.recurrent_weights`) in training, one mask per
            forward call (DropConnect, as in AWD-LSTM); every cell must name its weights.
        dropout_kind: ``"standard"`` or ``"locked"`` (one mask per sequence) for the dropout
            between layers.

    Shape:
        - input: :math:`(B, T, I)`; output: :math:`(B, T, H)` of the last layer.
        - state: a list with one cell state per layer.

    Raises:
        CellContractError: a cell's step (or a plugin cell's own forward) gives shapes other
            than the contract's, found by :func:`probe_cell` once here, before any training.
        WeightDropError: ``weight_drop > 0`` and a cell names no recurrent weights.
    """

    def __init__(
        self,
        cells: Sequence[Cell],
        dropout: float = 0.0,
        fused: bool = True,
        *,
        weight_drop: float = 0.0,
        dropout_kind: DropoutKind = "standard",
    ) -> None:
        super().__init__()
        if not cells:
            raise ValueError("a CellStack needs at least one cell")
        if not 0.0 <= weight_drop < 1.0:
            raise ValueError(f"weight_drop must be in [0, 1), got {weight_drop}")
        if dropout_kind not in DROPOUT_KINDS:
            raise ValueError(
                f"dropout_kind must be one of {', '.join(DROPOUT_KINDS)}, got {dropout_kind!r}"
            )
        for below, above in zip(cells, cells[1:], strict=False):
            if above.input_size != below.hidden_size:
                raise ValueError(
                    f"layer sizes do not chain: a layer of hidden size {below.hidden_size} "
                    f"feeds a layer of input size {above.input_size}"
                )
        for layer, cell in enumerate(cells):
            probe_cell(cell, layer)
        if weight_drop > 0:  # every cell must say which of its weights to drop
            for layer, cell in enumerate(cells):
                _recurrent_weights(cell, layer, weight_drop)
        self.cells = nn.ModuleList(cells)
        self.dropout = dropout
        self.fused = fused
        self.weight_drop = weight_drop
        self.dropout_kind = dropout_kind

    @property
    def hidden_size(self) -> int:
        return self.cells[-1].hidden_size

    def initial_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> StackState:
        return [cell.initial_state(batch_size, device=device, dtype=dtype) for cell in self.cells]

    def fused_kernel(self) -> Any:
        """The cells' ``forward_stack`` when this stack runs it, else ``None`` (the step loop)."""
        kind = type(self.cells[0])
        kernel = getattr(kind, "forward_stack", None)
        if self.fused and kernel is not None and all(type(c) is kind for c in self.cells):
            return kernel
        return None

    def dropped_weights(self) -> dict[str, Tensor]:
        """One weight-drop mask per recurrent weight, applied: ``{"cells.0.weight_hh": W * m /
        (1 - p)}`` with ``m`` Bernoulli(1 - p) from torch's global generator. Gradients flow to
        the weights through the kept entries."""
        p = self.weight_drop
        return {  # getattr, not get_parameter: an outer functional_call may have swapped them
            f"cells.{i}.{name}": nn.functional.dropout(getattr(cell, name), p, True)
            for i, cell in enumerate(self.cells)
            for name in type(cell).recurrent_weights
        }

    def forward(
        self, x: Tensor, state: StackState | None = None, *, weights_dropped: bool = False
    ) -> tuple[Tensor, StackState]:
        """The whole sequence ``x (B, T, I)`` through every layer: ``(outputs (B, T, H), one
        state per layer)``.

        In training with ``weight_drop > 0``, the call runs once more through
        :func:`torch.func.functional_call` with :meth:`dropped_weights` in place of the
        recurrent weights (``weights_dropped=True`` marks that inner call), so the fused kernel
        and the step loop alike use one mask for every time step.
        """
        if state is None:
            state = self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
        if self.training and self.weight_drop > 0 and not weights_dropped:
            kwargs = {"weights_dropped": True}
            return torch.func.functional_call(self, self.dropped_weights(), (x, state), kwargs)
        locked = self.dropout_kind == "locked" and self.training and self.dropout > 0
        kernel = None if locked and len(self.cells) > 1 else self.fused_kernel()
        if kernel is not None:  # locked masks between layers: each layer fused on its own
            fused = kernel(list(self.cells), x, state, self.dropout, self.training)
            if fused is not None:  # a kernel may decline a stack it cannot fuse
                return fused
        new_state = []
        for i, (cell, layer_state) in enumerate(zip(self.cells, state, strict=True)):
            x, layer_state = cell(x, layer_state)  # (B, T, H_i)
            new_state.append(layer_state)
            if i + 1 < len(self.cells) and self.dropout > 0:
                x = sequence_dropout(x, self.dropout, self.training, self.dropout_kind)
        return x, new_state

    def step(self, x_t: Tensor, state: StackState) -> tuple[Tensor, StackState]:
        """One time step through every layer: ``x_t (B, I)`` to ``(h_t (B, H), new state)``.

        Each layer runs its cell's own ``step``; generation advances one character at a time
        this way, skipping the sequence machinery (for the built-in cells, torch's one-step
        kernels; a whole-sequence kernel is slow to start for a single step).

        A single step has no sequence to keep masks over: in training, dropout between layers
        draws a new mask each call (locked or not), and weight drop is not applied.
        """
        if len(state) != len(self.cells):
            raise ValueError(f"expected a state for each of {len(self.cells)} layers")
        drop = self.dropout if self.training else 0.0
        new_state = []
        for i, cell in enumerate(self.cells):
            if i and drop:
                x_t = nn.functional.dropout(x_t, drop)
            x_t, layer_state = cell.step(x_t, state[i])  # (B, H_i)
            new_state.append(layer_state)
        return x_t, new_state

    def inference_step(self) -> Callable[[Tensor, StackState], tuple[Tensor, StackState]]:
        """:meth:`step` for generation (eval mode, no gradients, weights as they are now): each
        layer runs its cell's :meth:`~charseq.interfaces.Cell.inference_step`."""
        if self.training or type(self).step is not CellStack.step:
            return self.step  # dropout between layers, or a subclass's own step
        return onerow.StackInferenceStep([cell.inference_step() for cell in self.cells])


class CharModel(nn.Module):
    """A character-level language model: embedding -> :class:`CellStack` -> dropout -> linear.

    Args:
        vocab_size: number of token ids V.
        embedding_size: size E of the learned embedding.
        cells: the recurrent layers; the first takes E inputs.
        dropout: between layers and before the head.
        embedding_dropout: on the embedded characters, before the first layer.
        weight_drop: on the cells' recurrent weights (see :class:`CellStack`).
        dropout_kind: ``"standard"``, or ``"locked"``: the embedding, between-layer and output
            dropout each draw one mask ``(B, 1, F)`` per sequence (:func:`locked_dropout`).

    Shape:
        - ids: :math:`(B, T)` int64; logits: :math:`(B, T, V)`.

    Example::

        >>> from charseq.builtins.cells import LSTMCell
        >>> model = CharModel(65, 16, [LSTMCell(16, 32), LSTMCell(32, 32)])
        >>> logits, state = model(torch.zeros(4, 10, dtype=torch.long))
        >>> logits.shape
        torch.Size([4, 10, 65])
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        cells: Sequence[Cell],
        dropout: float = 0.0,
        embedding_dropout: float = 0.0,
        *,
        weight_drop: float = 0.0,
        dropout_kind: DropoutKind = "standard",
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        self.stack = CellStack(cells, dropout, weight_drop=weight_drop, dropout_kind=dropout_kind)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.stack.hidden_size, vocab_size)
        self.dropout_kind = dropout_kind

    def initial_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> StackState:
        device = self.head.weight.device if device is None else device
        dtype = self.head.weight.dtype if dtype is None else dtype
        return self.stack.initial_state(batch_size, device=device, dtype=dtype)

    def forward(self, ids: Tensor, state: StackState | None = None) -> tuple[Tensor, StackState]:
        if self.dropout_kind == "locked":  # one mask per sequence, the same at every step
            x = locked_dropout(self.embedding(ids), self.embedding_dropout.p, self.training)
            h, state = self.stack(x, state)  # (B, T, H)
            return self.head(locked_dropout(h, self.dropout.p, self.training)), state
        x = self.embedding_dropout(self.embedding(ids))  # (B, T) -> (B, T, E)
        h, state = self.stack(x, state)  # (B, T, H)
        return self.head(self.dropout(h)), state  # (B, T, V)

    def step(self, ids: Tensor, state: StackState) -> tuple[Tensor, StackState]:
        """One character per sequence: ``ids (B,)`` to next-token ``logits (B, V)`` and state.

        Equal to ``forward(ids[:, None], state)`` with the time dimension dropped; what
        generation calls once per character.
        """
        x = nn.functional.embedding(ids, self.embedding.weight)  # (B,) -> (B, E)
        if self.training:
            x = self.embedding_dropout(x)
        h, state = self.stack.step(x, state)  # (B, H)
        if self.training:
            h = self.dropout(h)
        return nn.functional.linear(h, self.head.weight, self.head.bias), state  # (B, V)

    def inference_step(self) -> Callable[[Tensor, StackState], tuple[Tensor, StackState]]:
        """:meth:`step` as generation runs it (eval mode, no gradients, weights as they are now);
        on the CPU one row runs in numpy, as :mod:`charseq.onerow` explains. In training mode,
        or where a subclass wrote its own :meth:`step`, this is :meth:`step` itself."""
        if self.training or type(self).step is not CharModel.step:
            return self.step
        return onerow.ModelInferenceStep(
            self.embedding.weight, self.stack.inference_step(), self.head
        )


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block, and back in the mode it was in after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def detach_stack_state(state: StackState) -> StackState:
    """Cut the graph behind every layer's state (truncated BPTT)."""
    return [detach_state(s) for s in state]


def select_stack_state(state: StackState, index: Tensor) -> StackState:
    """Rows ``index`` of every layer's state (beam search reorders sequences with this)."""
    return [select_state(s, index) for s in state]


detach = detach_stack_state
"""The old name of :func:`detach_stack_state`, kept."""
select = select_stack_state
"""The old name of :func:`select_stack_state`, kept."""
