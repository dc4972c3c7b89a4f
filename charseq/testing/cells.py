"""Conformance checks for cells.

Each check takes the cell to test as a registry Component, a ``"cell:name"`` string, or a
factory ``make_cell(input_size, hidden_size)`` returning a fresh :class:`charseq.Cell`. Checks
build their own cells at tiny sizes, move them to the dtype they need with ``.to(dtype)``, put
them in eval mode, and fix the torch seed (the caller's RNG state is restored afterwards)::

    from charseq.testing import check_gradcheck
    check_gradcheck(lambda i, h: MyCell(i, h))
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.autograd.gradcheck import GradcheckError

from charseq import onerow
from charseq.interfaces import Cell, State
from charseq.loop import detach_state, unroll
from charseq.model import CellStack
from charseq.onerow import VectorStep
from charseq.testing._base import (
    CheckError,
    CheckSkipped,
    Subject,
    assert_close,
    kit_settings,
    register_check,
    require,
)
from charseq.testing.strategies import CellDims, cell_dims, seeds

__all__ = [
    "ElmanCell",
    "check_batch_independence",
    "check_cell_api",
    "check_detach_state",
    "check_dtype_device",
    "check_fused_matches_step",
    "check_fused_stack_matches_layers",
    "check_gradcheck",
    "check_inference_step_matches_step",
    "check_no_nan_long_sequence",
    "check_seeded_determinism",
    "check_shapes",
    "check_state_dict_round_trip",
]

F64 = torch.float64

_FIX_STATE = (
    "initial_state(batch_size, device, dtype) and step(x_t, state) must return the state as a "
    "tuple of tensors with the batch on dimension 0, e.g. (h,) or (h, c), every step the same "
    "shapes."
)


class ElmanCell(Cell):
    r"""The smallest cell, :math:`h_t = \tanh(W_{ih} x_t + b + W_{hh} h_{t-1})`; step only.

    A reference for tests (the sampler checks run their model on it). Init U(-1/sqrt(H), 1/sqrt(H)).

    Args:
        input_size: The number of features in the input :math:`x_t`.
        hidden_size: The number of features in the output :math:`h_t`.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(hidden_size))
        bound = hidden_size**-0.5
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def initial_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> State:
        return (torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype),)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state  # (B, H)
        h = torch.tanh(nn.functional.linear(x_t, self.weight_ih, self.bias) + h @ self.weight_hh.T)
        return h, (h,)


# -- helpers --------------------------------------------------------------------------------------


def _make(subject: Subject, input_size: int, hidden_size: int, dtype: torch.dtype, seed: int = 0):
    torch.manual_seed(seed)
    cell = subject.build(input_size, hidden_size)
    require(
        isinstance(cell, Cell),
        f"the factory returned {type(cell).__name__}, not a charseq.Cell",
        "subclass charseq.Cell and write initial_state() and step().",
    )
    return cell.to(dtype).eval()


def _check_state(state: Any, batch: int, where: str) -> State:
    require(
        isinstance(state, tuple) and all(isinstance(s, Tensor) for s in state),
        f"{where} returned a state of type {_describe(state)}, not a tuple of tensors",
        _FIX_STATE,
    )
    for i, s in enumerate(state):
        require(
            s.dim() >= 1 and s.shape[0] == batch,
            f"{where}: state[{i}] has shape {tuple(s.shape)}; the batch ({batch}) must come first",
            _FIX_STATE,
        )
    return state


def _describe(value: Any) -> str:
    if isinstance(value, tuple | list):
        inner = ", ".join(_describe(v) for v in value)
        return f"{type(value).__name__}({inner})"
    if isinstance(value, Tensor):
        return f"Tensor{tuple(value.shape)}"
    return type(value).__name__


def _random_state(cell: Cell, batch: int, dtype: torch.dtype, gen: torch.Generator) -> State:
    """A non-zero state with the structure of ``initial_state`` (zeros would hide bugs)."""
    state = _check_state(
        cell.initial_state(batch, device="cpu", dtype=dtype), batch, "initial_state"
    )
    return tuple(
        torch.randn(s.shape, dtype=s.dtype, generator=gen) * 0.5 if s.is_floating_point() else s
        for s in state
    )


def _leaves(tensors: Sequence[Tensor]) -> list[Tensor]:
    return [t.detach().clone().requires_grad_(t.is_floating_point()) for t in tensors]


def _grads(loss: Tensor, inputs: Sequence[Tensor]) -> list[Tensor]:
    wanted = [t for t in inputs if t.requires_grad]
    grads = torch.autograd.grad(loss, wanted, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(wanted, grads, strict=True)]


def _loss(outputs: Tensor, state: Sequence[Tensor], gen: torch.Generator) -> Tensor:
    """A random linear function of everything a cell returns, so every gradient counts."""
    total = (outputs * torch.randn(outputs.shape, dtype=outputs.dtype, generator=gen)).sum()
    for s in state:
        if s.is_floating_point():
            total = total + (s * torch.randn(s.shape, dtype=s.dtype, generator=gen)).sum()
    return total


def _for_drawn(test: Callable[[CellDims, int], None], **limits: Any) -> None:
    """Run ``test(dims, seed)`` over Hypothesis draws (examples from the active profile)."""

    @kit_settings()
    @given(dims=cell_dims(**limits), seed=seeds())
    def drawn(dims: CellDims, seed: int) -> None:
        test(dims, seed)

    drawn()


# -- the checks -----------------------------------------------------------------------------------


@register_check("cell")
def check_cell_api(subject: Subject) -> None:
    """The cell is a ``charseq.Cell`` with the sizes it was given and the step/state contract.

    ``factory(3, 4)`` gives a Cell with ``input_size == 3`` and ``hidden_size == 4``;
    ``initial_state(2)`` is a tuple of ``(2, ...)`` tensors; ``step`` maps ``(2, 3)`` and that
    state to an output ``(2, 4)`` and a state of the same structure and shapes.
    """
    cell = _make(subject, 3, 4, torch.float32)
    require(
        (cell.input_size, cell.hidden_size) == (3, 4),
        f"factory(3, 4) built a cell with input_size={cell.input_size}, "
        f"hidden_size={cell.hidden_size}",
        "pass input_size and hidden_size on to charseq.Cell.__init__.",
    )
    state = _check_state(cell.initial_state(2), 2, "initial_state(2)")
    try:
        h, new_state = cell.step(torch.randn(2, 3), state)
    except Exception as error:
        first = (str(error).strip().splitlines() or [""])[0]
        raise CheckError(
            f"step(x_t (2, 3), initial_state(2)) raised {type(error).__name__}: {first}; "
            f"initial_state(2) gave {_describe(state)} for hidden_size 4",
            "initial_state(batch) must return the state step expects: a tuple of tensors "
            "(batch, ...) sized from hidden_size (e.g. (batch, hidden_size)), and step must "
            "accept x_t (batch, input_size).",
        ) from error
    require(
        isinstance(h, Tensor) and tuple(h.shape) == (2, 4),
        f"step(x_t (2, 3), state) returned an output {_describe(h)}; expected Tensor(2, 4)",
        "step returns (h_t, new_state) with h_t of shape (batch, hidden_size).",
    )
    new_state = _check_state(new_state, 2, "step")
    require(
        [s.shape for s in new_state] == [s.shape for s in state],
        f"step changed the state's shapes: {_describe(state)} -> {_describe(new_state)}",
        _FIX_STATE,
    )


@register_check("cell")
def check_shapes(subject: Subject) -> None:
    """``forward`` and ``step`` give the right shapes over drawn batch, time and sizes.

    For ``x`` of shape ``(B, T, I)``: ``forward(x)`` and ``forward(x, initial_state(B))`` return
    outputs ``(B, T, H)`` and a state with the same structure and shapes as ``initial_state(B)``.
    """

    def test(dims: CellDims, seed: int) -> None:
        cell = _make(subject, dims.input_size, dims.hidden_size, torch.float32, seed)
        b, t, h = dims.batch, dims.time, dims.hidden_size
        x = torch.randn(b, t, dims.input_size)
        initial = _check_state(cell.initial_state(b), b, f"initial_state({b})")
        for state, call in ((None, "forward(x)"), (initial, "forward(x, initial_state(B))")):
            out, final = cell(x, state)
            require(
                isinstance(out, Tensor) and tuple(out.shape) == (b, t, h),
                f"{call} with x {tuple(x.shape)} returned outputs {_describe(out)}; "
                f"expected Tensor{(b, t, h)}",
                "forward returns (outputs (B, T, H), state); a cell that only writes step gets "
                "this from the core's loop.",
            )
            final = _check_state(final, b, call)
            require(
                [s.shape for s in final] == [s.shape for s in initial],
                f"{call} returned a state {_describe(final)}; initial_state gave "
                f"{_describe(initial)}",
                _FIX_STATE,
            )

    _for_drawn(test)


@register_check("cell")
def check_gradcheck(subject: Subject) -> None:
    """``torch.autograd.gradcheck`` in float64 over the input, initial state and parameters.

    Runs on ``forward`` and, if the cell has a fused forward, on the core's step loop too.
    Parameters enter through ``torch.func.functional_call``. Sizes are tiny (B=2, T=3, I=3, H=2).
    """
    cell = _make(subject, 3, 2, F64)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 3, dtype=F64, generator=gen)
    state = _random_state(cell, 2, F64, gen)
    names = [name for name, _ in cell.named_parameters()]
    params = [p for _, p in cell.named_parameters()]
    paths = {"forward": cell}
    if subject.tags.get("fused_forward"):
        paths["the step loop charseq.loop.unroll"] = _StepLoop(cell)
    for path, module in paths.items():
        prefix = "" if module is cell else "cell."

        def run(x: Tensor, *rest: Tensor, module: nn.Module = module, prefix: str = prefix):
            state_now, params_now = _split_state(state, rest[: len(state)]), rest[len(state) :]
            replaced = {prefix + n: p for n, p in zip(names, params_now, strict=True)}
            out, final = torch.func.functional_call(module, replaced, (x, state_now))
            return (out, *[s for s in final if s.is_floating_point()])

        inputs = _leaves([x, *state, *params])
        try:
            torch.autograd.gradcheck(run, tuple(inputs), eps=1e-6, atol=1e-5, rtol=1e-3)
        except GradcheckError as error:
            raise CheckError(
                f"the gradients of {path} disagree with finite differences (inputs: x, then the "
                f"{len(state)} state tensor(s), then parameters {names}):\n{error}",
                "compute everything with differentiable torch operations (no .detach(), no "
                ".data, no in-place writes into tensors autograd saved, no numpy), in the dtype "
                "of the input.",
            ) from None


class _StepLoop(nn.Module):
    """Runs a cell through the core's loop, so functional_call can swap its parameters."""

    def __init__(self, cell: Cell) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        return unroll(self.cell, x, state)


def _split_state(template: State, floats: Sequence[Tensor]) -> State:
    return tuple(f if t.is_floating_point() else t for t, f in zip(template, floats, strict=True))


@register_check("cell", requires=("fused_forward",))
def check_fused_matches_step(subject: Subject) -> None:
    """The cell's own ``forward`` equals the core's step loop ``charseq.loop.unroll``.

    Compared in float64 over drawn sizes, from the default and from a random initial state:
    outputs, final state, and the gradients of a random linear loss with respect to the input,
    the initial state and every parameter.
    """
    fix = (
        "the fused forward must compute exactly what step computes one step at a time; compare "
        "the two on a small input, or delete forward and let the core run step."
    )

    def test(dims: CellDims, seed: int) -> None:
        cell = _make(subject, dims.input_size, dims.hidden_size, F64, seed)
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(dims.batch, dims.time, dims.input_size, dtype=F64, generator=gen)
        with torch.no_grad():
            fused, fused_state = cell(x)
            looped, looped_state = unroll(cell, x)
        assert_close(fused, looped, "forward(x) outputs differ from the step loop's", fix)
        assert_close(
            list(fused_state),
            list(looped_state),
            "forward(x) final state differs from the step loop's",
            fix,
        )

        state = _random_state(cell, dims.batch, F64, gen)
        params = list(cell.parameters())
        results = []
        for run in (cell, lambda x, s: unroll(cell, x, s)):
            x_leaf, *state_leaves = _leaves([x, *state])
            out, final = run(x_leaf, _split_state(state, state_leaves))
            loss = _loss(out, final, torch.Generator().manual_seed(seed))
            results.append(
                (
                    out.detach(),
                    [s.detach() for s in final],
                    _grads(loss, [x_leaf, *state_leaves, *params]),
                )
            )
        (out_f, state_f, grads_f), (out_s, state_s, grads_s) = results
        what = "forward(x, state) {} differs from the step loop's, from a random initial state"
        assert_close(out_f, out_s, what.format("outputs"), fix)
        assert_close(state_f, state_s, what.format("final state"), fix)
        assert_close(
            grads_f, grads_s, what.format("gradient (w.r.t. [x, *state, *parameters])"), fix
        )

    _for_drawn(test)


@register_check("cell", requires=("fused_stack",))
def check_fused_stack_matches_layers(subject: Subject) -> None:
    """A ``CellStack`` run by the class's ``forward_stack`` equals the same stack layer by layer.

    Compares ``CellStack(cells, fused=True)`` with ``fused=False`` over the same cells (1 to 3
    layers, float64): outputs, per-layer final states and gradients, in train mode without
    dropout and in eval mode with dropout 0.5 (which must then be off).
    """
    fix = (
        "forward_stack(cells, x, state, dropout, training) must return what running each cell's "
        "forward in turn returns (dropout between layers only, and only when training), with one "
        "state per layer in the same layout as the cell's initial_state; or return None to "
        "decline stacks it cannot fuse."
    )
    probe = [_make(subject, 3, 4, F64), _make(subject, 4, 4, F64)]
    x = torch.randn(2, 3, 3, dtype=F64)
    kernel = type(probe[0]).forward_stack
    with torch.no_grad():
        declined = (
            kernel(probe, x, [c.initial_state(2, dtype=F64) for c in probe], 0.0, False) is None
        )
    if declined:
        raise CheckSkipped(
            f"{subject.label}: forward_stack declined a plain 2-layer float64 stack on the CPU, "
            "so there is no fused path to compare"
        )

    def test(dims: CellDims, seed: int, layers: int) -> None:
        sizes = [dims.input_size] + [dims.hidden_size] * layers
        cells = [_make(subject, sizes[i], sizes[i + 1], F64, seed + i) for i in range(layers)]
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(dims.batch, dims.time, dims.input_size, dtype=F64, generator=gen)
        state = [_random_state(c, dims.batch, F64, gen) for c in cells]
        params = [p for c in cells for p in c.parameters()]
        for dropout, training in ((0.0, True), (0.5, False)):
            results = []
            for fused in (True, False):
                stack = CellStack(cells, dropout=dropout, fused=fused).train(training)
                x_leaf, *flat = _leaves([x, *(s for layer in state for s in layer)])
                state_in, i = [], 0
                for layer in state:
                    state_in.append(_split_state(layer, flat[i : i + len(layer)]))
                    i += len(layer)
                out, final = stack(x_leaf, state_in)
                require(
                    isinstance(final, list) and len(final) == layers,
                    f"the fused stack returned a state {_describe(final)}; expected a list of "
                    f"{layers} per-layer states",
                    fix,
                )
                flat_final = [s for layer in final for s in layer]
                loss = _loss(out, flat_final, torch.Generator().manual_seed(seed))
                results.append(
                    (
                        out.detach(),
                        [[s.detach() for s in layer] for layer in final],
                        _grads(loss, [x_leaf, *flat, *params]),
                    )
                )
            (out_f, state_f, grads_f), (out_l, state_l, grads_l) = results
            mode = f"{layers}-layer stack, dropout={dropout}, training={training}"
            assert_close(out_f, out_l, f"fused outputs differ from layer by layer ({mode})", fix)
            assert_close(
                state_f, state_l, f"fused final states differ from layer by layer ({mode})", fix
            )
            assert_close(
                grads_f,
                grads_l,
                f"fused gradients (w.r.t. [x, *states, *parameters]) "
                f"differ from layer by layer ({mode})",
                fix,
            )

    @kit_settings()
    @given(dims=cell_dims(), seed=seeds(), layers=st.integers(1, 3))
    def drawn(dims: CellDims, seed: int, layers: int) -> None:
        test(dims, seed % 2**30, layers)

    drawn()


@register_check("cell")
def check_compiled_matches_step(subject: Subject) -> None:
    """The layers as ``train.compile`` compiles them compute what they compute eagerly.

    ``train.compile`` runs ``torch.compile`` (``dynamic=False``) on the model's forward pass
    when its stack has no fused kernel: a cell that writes only ``step`` (or a single-layer
    ``forward``). Here a 2-layer float64 :class:`~charseq.model.CellStack` of the cell, in
    training mode from a random state, is compiled that way with the ``aot_eager`` backend (the
    graph capture and autograd tracing inductor gets, without a C++ compiler or minutes of code
    generation) and compared with the eager stack: outputs, final states and gradients. Skipped
    for classes with a ``forward_stack``, which the trainer leaves uncompiled.
    """
    if subject.tags.get("fused_stack"):
        raise CheckSkipped(
            f"{subject.label} has a fused multi-layer kernel (forward_stack), which "
            "train.compile leaves as it is"
        )
    fix = (
        "step must compute the same when torch.compile traces it: nothing that depends on "
        "torch.compiler.is_compiling(), no Python state on the module that changes between "
        "calls; or leave train.compile off for this cell."
    )
    cells = [_make(subject, 3, 4, F64, 0), _make(subject, 4, 4, F64, 1)]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 3, dtype=F64, generator=gen)
    state = [_random_state(cell, 2, F64, gen) for cell in cells]
    params = [p for cell in cells for p in cell.parameters()]
    stack = CellStack(cells).train()
    graphs: list[Any] = []

    from torch._dynamo.backends.debugging import aot_eager  # imports torch's compiler: here only

    def backend(graph: Any, example_inputs: Any) -> Any:
        graphs.append(graph)  # proof that torch.compile traced it, not fell back to eager
        return aot_eager(graph, example_inputs)

    compiled = torch.compile(stack, backend=backend, dynamic=False)
    results = []
    for run, what in ((stack, "eager"), (compiled, "compiled")):
        x_leaf, *flat = _leaves([x, *(s for layer in state for s in layer)])
        state_in, i = [], 0
        for layer in state:
            state_in.append(_split_state(layer, flat[i : i + len(layer)]))
            i += len(layer)
        try:
            # the same global random stream for both (a cell random in training, e.g. zoneout,
            # draws the same numbers), and the caller's stream left as it was
            with torch.random.fork_rng(), torch._dynamo.config.patch(recompile_limit=1_000):
                torch.manual_seed(0)
                out, final = run(x_leaf, state_in)
        except Exception as error:
            if what == "eager":
                raise
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise CheckError(
                f"torch.compile could not run a 2-layer stack of the cell: "
                f"{type(error).__name__}: {first_line}",
                fix,
            ) from error
        flat_final = [s for layer in final for s in layer]
        loss = _loss(out, flat_final, torch.Generator().manual_seed(0))
        results.append(
            (out.detach(), [s.detach() for s in flat_final], _grads(loss, [x_leaf, *flat, *params]))
        )
    require(bool(graphs), "torch.compile traced no graph of the stack", fix)
    (out_e, state_e, grads_e), (out_c, state_c, grads_c) = results
    assert_close(out_c, out_e, "compiled outputs differ from the eager step loop's", fix)
    assert_close(state_c, state_e, "compiled final states differ from the eager step loop's", fix)
    assert_close(grads_c, grads_e, "compiled gradients differ from the eager step loop's", fix)


@register_check("cell", requires=("inference_step",))
def check_inference_step_matches_step(subject: Subject) -> None:
    """The cell's ``inference_step()`` (what generation runs) equals its ``step``.

    Over drawn sizes and at batch size 1 (what generating one text runs), from a random state,
    in float32 and float64, in eval mode and without gradients: each of several steps' outputs
    and states, the function built once and fed its own states back step after step. When it
    also has a ``vector_step`` (:class:`charseq.onerow.VectorStep`, which a stack runs on
    arrays), that is held to ``step`` for one row the same way, and must leave the arrays it is
    given as they were (the previous state's tensors share their memory).
    """
    fix = (
        "inference_step() must return a function computing what step(x_t, state) computes "
        "with the weights the cell has when it is built; or leave it out (the default is step "
        "itself)."
    )

    def test(dims: CellDims, seed: int) -> None:
        for dtype, batch in itertools.product((torch.float32, F64), sorted({1, dims.batch})):
            cell = _make(subject, dims.input_size, dims.hidden_size, dtype, seed)
            gen = torch.Generator().manual_seed(seed)
            x = torch.randn(batch, dims.time, dims.input_size, dtype=dtype, generator=gen)
            start = _random_state(cell, batch, dtype, gen)
            with torch.no_grad():
                fast = cell.inference_step()
                expected, state = [], start
                for x_t in x.unbind(1):
                    h_t, state = cell.step(x_t, state)
                    expected.append((h_t, state))
                state = start
                for t, x_t in enumerate(x.unbind(1)):
                    h_t, state = fast(x_t, state)
                    state = _check_state(state, batch, "inference_step()(x_t, state)")
                    what = f"inference_step, {dtype}, batch {batch}, step {t + 1} of {dims.time}"
                    assert_close(h_t, expected[t][0], f"{what}: outputs differ from step's", fix)
                    assert_close(
                        list(state), list(expected[t][1]), f"{what}: state differs from step's", fix
                    )
                if batch == 1 and isinstance(fast, VectorStep):
                    _check_vector_step(fast, x[0], start, expected, dtype)

    _for_drawn(test)


def _check_vector_step(
    fast: VectorStep, x: Tensor, start: State, expected: list[tuple[Tensor, State]], dtype: Any
) -> None:
    """``fast.vector_step`` over the rows ``x`` ``(T, I)`` from ``start`` (one row) gives the
    ``expected`` outputs and states, and never writes into its inputs."""
    fix = (
        "vector_step(x, state) must compute what step computes for one row, on 1-D arrays, "
        "returning new arrays (never writing into x or the state's arrays)."
    )
    state = tuple(onerow.vector(s) for s in start)
    for t, x_t in enumerate(x.unbind(0)):
        given = (x_t.numpy(), *state)
        kept = [a.copy() for a in given]
        h, state = fast.vector_step(given[0], tuple(given[1:]))
        what = f"vector_step, {dtype}, step {t + 1} of {x.shape[0]}"
        require(
            all(np.array_equal(a, b) for a, b in zip(given, kept, strict=True)),
            f"{what}: it wrote into the arrays it was given",
            fix,
        )
        got = [onerow.row(np.asarray(a)) for a in (h, *state)]
        want = [expected[t][0], *expected[t][1]]
        require(len(got) == len(want), f"{what}: {len(got) - 1} state arrays, not {len(want) - 1}")
        assert_close(got, want, f"{what}: output or state differs from step's", fix)


@register_check("cell")
def check_batch_independence(subject: Subject) -> None:
    """Row ``i`` of a batch equals running row ``i`` alone (outputs and final state).

    Run in float64 from a random initial state, so a cell that mixes rows (through the state or
    a batch statistic) is caught.
    """

    def test(dims: CellDims, seed: int) -> None:
        b = dims.batch + 1  # at least 2 rows
        cell = _make(subject, dims.input_size, dims.hidden_size, F64, seed)
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(b, dims.time, dims.input_size, dtype=F64, generator=gen)
        state = _random_state(cell, b, F64, gen)
        with torch.no_grad():
            out, final = cell(x, state)
            for i in range(b):
                row = slice(i, i + 1)
                out_i, final_i = cell(x[row], tuple(s[row] for s in state))
                fix = (
                    "every operation must act on each batch row on its own: no reductions "
                    "over dimension 0 (mean, sum, norm over the batch), no batch norm, no state "
                    "kept on the module between calls."
                )
                assert_close(
                    out_i,
                    out[row],
                    f"row {i} of {b} run alone gives other outputs than in the batch",
                    fix,
                )
                assert_close(
                    [s for s in final_i],
                    [s[row] for s in final],
                    f"row {i} of {b} run alone ends in another state than in the batch",
                    fix,
                )

    _for_drawn(test, max_batch=3)


@register_check("cell")
def check_detach_state(subject: Subject) -> None:
    """``charseq.loop.detach_state`` cuts the graph between two chunks (truncated BPTT).

    After ``forward`` on a first chunk, the detached state keeps its values and has no history;
    backward from a second chunk run from it reaches neither the first chunk's input nor its
    graph, and the parameter gradients equal those of a run from a fresh copy of the state.
    """
    cell = _make(subject, 3, 4, torch.float32)
    gen = torch.Generator().manual_seed(0)
    x1 = torch.randn(2, 4, 3, generator=gen).requires_grad_()
    x2 = torch.randn(2, 4, 3, generator=gen)
    _, state = cell(x1)
    detached = _check_state(detach_state(state), 2, "detach_state(forward(x1)[1])")
    assert_close(
        list(detached),
        [s.detach() for s in state],
        "detach_state changed the state's values",
        _FIX_STATE,
    )
    require(
        not any(s.requires_grad for s in detached),
        "the detached state still requires grad",
        _FIX_STATE,
    )
    params = list(cell.parameters())
    out, final = cell(x2, detached)
    loss = _loss(out, final, torch.Generator().manual_seed(1))
    grads = torch.autograd.grad(loss, [x1, *params], allow_unused=True)
    leak = grads[0]
    require(
        leak is None or not leak.abs().sum().item(),
        "backward from the second chunk reached the first chunk's input through the state, "
        "though the state was detached",
        "the state must carry everything from one call to the next; keep no tensors on the "
        "module between calls (e.g. a cached h or a running statistic).",
    )
    fresh = tuple(s.clone() for s in detached)
    out, final = cell(x2, fresh)
    expected = torch.autograd.grad(
        _loss(out, final, torch.Generator().manual_seed(1)), params, allow_unused=True
    )
    assert_close(
        [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads[1:], strict=True)],
        [torch.zeros_like(p) if g is None else g for p, g in zip(params, expected, strict=True)],
        "parameter gradients from a detached state differ from those from a fresh copy of it",
        "the cell must depend on the previous chunk only through the state it is given.",
    )


@register_check("cell")
def check_seeded_determinism(subject: Subject) -> None:
    """The same torch seed gives the same weights, and the same input the same outputs.

    Two cells built after ``torch.manual_seed(1234)`` have equal state dicts and give
    bit-identical outputs; one cell called twice on one input gives bit-identical outputs.
    """
    fix = (
        "draw initial weights only from torch's global RNG (torch.nn.init, torch.rand*), not "
        "from Python's random, numpy or the clock, and keep forward free of randomness in eval "
        "mode."
    )
    first = _make(subject, 3, 4, torch.float32, seed=1234)
    second = _make(subject, 3, 4, torch.float32, seed=1234)
    a, b = first.state_dict(), second.state_dict()
    require(list(a) == list(b), f"state dict keys differ: {list(a)} vs {list(b)}", fix)
    for key in a:
        require(
            torch.equal(a[key], b[key]),
            f"{key!r} differs between two cells built after the same torch.manual_seed",
            fix,
        )
    x = torch.randn(2, 5, 3)
    with torch.no_grad():
        out_a, state_a = first(x)
        out_b, state_b = second(x)
        out_again, state_again = first(x)
    for name, (p, q) in {"twin cell": (out_a, out_b), "second call": (out_a, out_again)}.items():
        require(torch.equal(p, q), f"outputs differ between the first call and the {name}", fix)
    require(
        all(torch.equal(p, q) for p, q in zip(state_a, state_again, strict=True)),
        "the final state differs between two calls on the same input",
        fix,
    )


@register_check("cell")
def check_dtype_device(subject: Subject) -> None:
    """The cell follows its dtype and device, and ``initial_state`` honours the ones it is given.

    A cell moved to float64 returns float64 outputs and state from ``forward`` and ``step``;
    ``initial_state(B, device=..., dtype=...)`` returns tensors on that device (checked on the
    ``meta`` device, and on CUDA when available) in that dtype, whatever the cell's own dtype.
    """
    fix = (
        "create state with torch.zeros(..., device=device, dtype=dtype) from initial_state's "
        "arguments, and compute in the input's dtype (no hard-coded float32, no .float())."
    )
    cell = _make(subject, 3, 4, F64)
    targets = [("meta", F64), ("cpu", torch.float32)]
    if torch.cuda.is_available():
        targets.append(("cuda", torch.float32))
    for device, dtype in targets:
        made = _check_state(
            cell.initial_state(2, device=device, dtype=dtype),
            2,
            f"initial_state(2, device={device!r}, dtype={dtype})",
        )
        for i, s in enumerate(made):
            require(
                s.device.type == device,
                f"initial_state(2, device={device!r}) put state[{i}] on {s.device}",
                fix,
            )
            require(
                not s.is_floating_point() or s.dtype == dtype,
                f"initial_state(2, dtype={dtype}) made state[{i}] {s.dtype}",
                fix,
            )
    x = torch.randn(2, 3, 3, dtype=F64)
    out, state = cell(x)
    h, step_state = cell.step(x[:, 0], cell.initial_state(2, dtype=F64))
    for where, tensors in {
        "forward outputs": [out],
        "forward state": state,
        "step output": [h],
        "step state": step_state,
    }.items():
        dtypes = [t.dtype for t in tensors if t.is_floating_point()]
        require(
            all(d == F64 for d in dtypes),
            f"a float64 cell on float64 input gave {where} in {dtypes}",
            fix,
        )
    if torch.cuda.is_available():
        gpu = cell.to("cuda")
        out, state = gpu(x.to("cuda"))
        require(
            out.is_cuda and all(s.is_cuda for s in state),
            "a cell moved to CUDA returned outputs or state on another device",
            fix,
        )


@register_check("cell")
def check_state_dict_round_trip(subject: Subject) -> None:
    """Weights saved with ``state_dict`` and loaded into a fresh instance give identical outputs.

    Every value in the state dict is a tensor (checkpoints are safetensors files), and a cell
    built with another seed behaves identically after ``load_state_dict`` (strict).
    """
    fix = (
        "keep all weights in nn.Parameter or registered buffers (not plain attributes or Python "
        "lists), and derive anything cached from them."
    )
    source = _make(subject, 3, 4, torch.float32, seed=1)
    target = _make(subject, 3, 4, torch.float32, seed=2)
    saved = source.state_dict()
    odd = {k: type(v).__name__ for k, v in saved.items() if not isinstance(v, Tensor)}
    require(not odd, f"state_dict holds values that are not tensors: {odd}", fix)
    target.load_state_dict({k: v.clone() for k, v in saved.items()})
    x = torch.randn(2, 5, 3)
    with torch.no_grad():
        out_s, state_s = source(x)
        out_t, state_t = target(x)
    require(
        torch.equal(out_s, out_t) and all(map(torch.equal, state_s, state_t)),
        "a fresh cell that loaded the state dict gives other outputs than the original",
        fix,
    )


@register_check("cell")
def check_no_nan_long_sequence(subject: Subject) -> None:
    """500 steps of standard-normal input (B=2, I=4, H=8) give finite outputs and state."""
    cell = _make(subject, 4, 8, torch.float32)
    x = torch.randn(2, 500, 4)
    with torch.no_grad():
        out, state = cell(x)
    bad = [
        name
        for name, t in [("outputs", out), *((f"state[{i}]", s) for i, s in enumerate(state))]
        if t.is_floating_point() and not torch.isfinite(t).all()
    ]
    if bad:
        first = int((~torch.isfinite(out)).any(dim=(0, 2)).nonzero()[0]) if "outputs" in bad else -1
        where = f" (outputs first non-finite at step {first})" if first >= 0 else ""
        raise CheckError(
            f"NaN or inf in {', '.join(bad)} after 500 steps{where}",
            "bound the state (squash it with tanh/sigmoid gates, as LSTM and GRU do), avoid "
            "exp/log/division on unbounded values, and use a scaled init such as "
            "U(-1/sqrt(H), 1/sqrt(H)).",
        )
