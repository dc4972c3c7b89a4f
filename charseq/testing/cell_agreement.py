"""Conformance checks for cells: every path that runs a cell computes what its ``step`` does.

A cell may bring a fused ``forward``, a fused multi-layer ``forward_stack`` and a fast
``inference_step``; ``train.compile`` may compile its step loop. Each of these is held to the
step loop here (outputs, states and gradients), as are gradients to finite differences, one
batch row to the same row run alone, and a detached state to a fresh one. The contract a cell
keeps on its own is in :mod:`charseq.testing.cell_contract`.

Each check takes the cell to test as a registry Component, a ``"cell:name"`` string, or a
factory ``make_cell(input_size, hidden_size)`` returning a fresh :class:`charseq.Cell`::

    from charseq.testing import check_gradcheck
    check_gradcheck(lambda i, h: MyCell(i, h))
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.autograd.gradcheck import GradcheckError

from charseq import onerow
from charseq.interfaces import State
from charseq.loop import detach_state, unroll
from charseq.model import CellStack
from charseq.onerow import VectorStep
from charseq.testing._base import (
    CheckError,
    CheckSkipped,
    Subject,
    assert_close,
    describe,
    kit_settings,
    register_check,
    require,
)
from charseq.testing._cell_harness import (
    F64,
    FIX_STATE,
    StepLoop,
    check_state,
    for_drawn,
    grads,
    leaves,
    loss,
    make_cell,
    random_state,
    run_with_grads,
    unflatten,
)
from charseq.testing.strategies import CellDims, cell_dims, seeds

__all__ = [
    "check_batch_independence",
    "check_compiled_matches_step",
    "check_detach_state",
    "check_fused_matches_step",
    "check_fused_stack_matches_layers",
    "check_gradcheck",
    "check_inference_step_matches_step",
]


@register_check("cell")
def check_gradcheck(subject: Subject) -> None:
    """``torch.autograd.gradcheck`` in float64 over the input, initial state and parameters.

    Runs on ``forward`` and, if the cell has a fused forward, on the core's step loop too.
    Parameters enter through ``torch.func.functional_call``. Sizes are tiny (B=2, T=3, I=3, H=2).
    """
    cell = make_cell(subject, 3, 2, F64)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 3, dtype=F64, generator=gen)
    state = random_state(cell, 2, F64, gen)
    names = [name for name, _ in cell.named_parameters()]
    params = [p for _, p in cell.named_parameters()]
    paths = {"forward": cell}
    if subject.tags.get("fused_forward"):
        paths["the step loop charseq.loop.unroll"] = StepLoop(cell)
    for path, module in paths.items():
        prefix = "" if module is cell else "cell."

        def run(x: Tensor, *rest: Tensor, module: nn.Module = module, prefix: str = prefix):
            state_now, params_now = unflatten(state, iter(rest[: len(state)])), rest[len(state) :]
            replaced = {prefix + n: p for n, p in zip(names, params_now, strict=True)}
            out, final = torch.func.functional_call(module, replaced, (x, state_now))
            return (out, *[s for s in final if s.is_floating_point()])

        inputs = leaves([x, *state, *params])
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
        cell = make_cell(subject, dims.input_size, dims.hidden_size, F64, seed)
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

        state = random_state(cell, dims.batch, F64, gen)
        params = list(cell.parameters())
        (out_f, state_f, grads_f), (out_s, state_s, grads_s) = (
            run_with_grads(run, x, state, params, seed)
            for run in (cell, lambda x, s: unroll(cell, x, s))
        )
        what = "forward(x, state) {} differs from the step loop's, from a random initial state"
        assert_close(out_f, out_s, what.format("outputs"), fix)
        assert_close(state_f, state_s, what.format("final state"), fix)
        assert_close(
            grads_f, grads_s, what.format("gradient (w.r.t. [x, *state, *parameters])"), fix
        )

    for_drawn(test)


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
    probe = [make_cell(subject, 3, 4, F64), make_cell(subject, 4, 4, F64)]
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
        cells = [make_cell(subject, sizes[i], sizes[i + 1], F64, seed + i) for i in range(layers)]
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(dims.batch, dims.time, dims.input_size, dtype=F64, generator=gen)
        state = [random_state(c, dims.batch, F64, gen) for c in cells]
        params = [p for c in cells for p in c.parameters()]

        def run(stack: CellStack, x: Tensor, state: list[State]) -> tuple[Tensor, list[State]]:
            out, final = stack(x, state)
            require(
                isinstance(final, list) and len(final) == layers,
                f"the fused stack returned a state {describe(final)}; expected a list of "
                f"{layers} per-layer states",
                fix,
            )
            return out, final

        for dropout, training in ((0.0, True), (0.5, False)):
            stacks = [
                CellStack(cells, dropout=dropout, fused=fused).train(training)
                for fused in (True, False)
            ]
            (out_f, state_f, grads_f), (out_l, state_l, grads_l) = (
                run_with_grads(functools.partial(run, stack), x, state, params, seed)
                for stack in stacks
            )
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
    cells = [make_cell(subject, 3, 4, F64, 0), make_cell(subject, 4, 4, F64, 1)]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 3, dtype=F64, generator=gen)
    state = [random_state(cell, 2, F64, gen) for cell in cells]
    params = [p for cell in cells for p in cell.parameters()]
    stack = CellStack(cells).train()
    graphs: list[Any] = []

    from torch._dynamo.backends.debugging import aot_eager  # imports torch's compiler: here only

    def backend(graph: Any, example_inputs: Any) -> Any:
        graphs.append(graph)  # proof that torch.compile traced it, not fell back to eager
        return aot_eager(graph, example_inputs)

    compiled = torch.compile(stack, backend=backend, dynamic=False)

    def run(module: nn.Module, x: Tensor, state: list[State]) -> tuple[Tensor, list[State]]:
        try:
            # the same global random stream for both (a cell random in training, e.g. zoneout,
            # draws the same numbers), and the caller's stream left as it was
            with torch.random.fork_rng(), torch._dynamo.config.patch(recompile_limit=1_000):
                torch.manual_seed(0)
                return module(x, state)
        except Exception as error:
            if module is stack:
                raise
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise CheckError(
                f"torch.compile could not run a 2-layer stack of the cell: "
                f"{type(error).__name__}: {first_line}",
                fix,
            ) from error

    (out_e, state_e, grads_e), (out_c, state_c, grads_c) = (
        run_with_grads(functools.partial(run, module), x, state, params, seed=0)
        for module in (stack, compiled)
    )
    require(bool(graphs), "torch.compile traced no graph of the stack", fix)
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
            cell = make_cell(subject, dims.input_size, dims.hidden_size, dtype, seed)
            gen = torch.Generator().manual_seed(seed)
            x = torch.randn(batch, dims.time, dims.input_size, dtype=dtype, generator=gen)
            start = random_state(cell, batch, dtype, gen)
            with torch.no_grad():
                fast = cell.inference_step()
                expected, state = [], start
                for x_t in x.unbind(1):
                    h_t, state = cell.step(x_t, state)
                    expected.append((h_t, state))
                state = start
                for t, x_t in enumerate(x.unbind(1)):
                    h_t, state = fast(x_t, state)
                    state = check_state(state, batch, "inference_step()(x_t, state)")
                    what = f"inference_step, {dtype}, batch {batch}, step {t + 1} of {dims.time}"
                    assert_close(h_t, expected[t][0], f"{what}: outputs differ from step's", fix)
                    assert_close(
                        list(state), list(expected[t][1]), f"{what}: state differs from step's", fix
                    )
                if batch == 1 and isinstance(fast, VectorStep):
                    _check_vector_step(fast, x[0], start, expected, dtype)

    for_drawn(test)


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
        cell = make_cell(subject, dims.input_size, dims.hidden_size, F64, seed)
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(b, dims.time, dims.input_size, dtype=F64, generator=gen)
        state = random_state(cell, b, F64, gen)
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

    for_drawn(test, max_batch=3)


@register_check("cell")
def check_detach_state(subject: Subject) -> None:
    """``charseq.loop.detach_state`` cuts the graph between two chunks (truncated BPTT).

    After ``forward`` on a first chunk, the detached state keeps its values and has no history;
    backward from a second chunk run from it reaches neither the first chunk's input nor its
    graph, and the parameter gradients equal those of a run from a fresh copy of the state.
    """
    cell = make_cell(subject, 3, 4, torch.float32)
    gen = torch.Generator().manual_seed(0)
    x1 = torch.randn(2, 4, 3, generator=gen).requires_grad_()
    x2 = torch.randn(2, 4, 3, generator=gen)
    _, state = cell(x1)
    detached = check_state(detach_state(state), 2, "detach_state(forward(x1)[1])")
    assert_close(
        list(detached),
        [s.detach() for s in state],
        "detach_state changed the state's values",
        FIX_STATE,
    )
    require(
        not any(s.requires_grad for s in detached),
        "the detached state still requires grad",
        FIX_STATE,
    )
    params = list(cell.parameters())
    out, final = cell(x2, detached)
    leak, *from_detached = grads(loss(out, final, torch.Generator().manual_seed(1)), [x1, *params])
    require(
        not leak.abs().sum().item(),
        "backward from the second chunk reached the first chunk's input through the state, "
        "though the state was detached",
        "the state must carry everything from one call to the next; keep no tensors on the "
        "module between calls (e.g. a cached h or a running statistic).",
    )
    fresh = tuple(s.clone() for s in detached)
    out, final = cell(x2, fresh)
    assert_close(
        from_detached,
        grads(loss(out, final, torch.Generator().manual_seed(1)), params),
        "parameter gradients from a detached state differ from those from a fresh copy of it",
        "the cell must depend on the previous chunk only through the state it is given.",
    )
