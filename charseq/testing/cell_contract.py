"""Conformance checks for cells: the contract every cell keeps on its own.

What a :class:`charseq.Cell` promises whatever path runs it: the sizes it was given, the shapes
of its outputs and state, the dtype and device it is moved to, weights that survive a
``state_dict`` round trip, seeded determinism and finite values over long sequences. The checks
that hold two paths of a cell to each other are in :mod:`charseq.testing.cell_agreement`.

Each check takes the cell to test as a registry Component, a ``"cell:name"`` string, or a
factory ``make_cell(input_size, hidden_size)`` returning a fresh :class:`charseq.Cell`. Checks
build their own cells at tiny sizes, move them to the dtype they need with ``.to(dtype)``, put
them in eval mode, and fix the torch seed (the caller's RNG state is restored afterwards)::

    from charseq.testing import check_shapes
    check_shapes(lambda i, h: MyCell(i, h))
"""

from __future__ import annotations

import torch
from torch import Tensor

from charseq.testing._base import CheckError, Subject, describe, register_check, require
from charseq.testing._cell_harness import F64, FIX_STATE, check_state, for_drawn, make_cell
from charseq.testing.strategies import CellDims

__all__ = [
    "check_cell_api",
    "check_dtype_device",
    "check_no_nan_long_sequence",
    "check_seeded_determinism",
    "check_shapes",
    "check_state_dict_round_trip",
]


@register_check("cell")
def check_cell_api(subject: Subject) -> None:
    """The cell is a ``charseq.Cell`` with the sizes it was given and the step/state contract.

    ``factory(3, 4)`` gives a Cell with ``input_size == 3`` and ``hidden_size == 4``;
    ``initial_state(2)`` is a tuple of ``(2, ...)`` tensors; ``step`` maps ``(2, 3)`` and that
    state to an output ``(2, 4)`` and a state of the same structure and shapes.
    """
    cell = make_cell(subject, 3, 4, torch.float32)
    require(
        (cell.input_size, cell.hidden_size) == (3, 4),
        f"factory(3, 4) built a cell with input_size={cell.input_size}, "
        f"hidden_size={cell.hidden_size}",
        "pass input_size and hidden_size on to charseq.Cell.__init__.",
    )
    state = check_state(cell.initial_state(2), 2, "initial_state(2)")
    try:
        h, new_state = cell.step(torch.randn(2, 3), state)
    except Exception as error:
        first = (str(error).strip().splitlines() or [""])[0]
        raise CheckError(
            f"step(x_t (2, 3), initial_state(2)) raised {type(error).__name__}: {first}; "
            f"initial_state(2) gave {describe(state)} for hidden_size 4",
            "initial_state(batch) must return the state step expects: a tuple of tensors "
            "(batch, ...) sized from hidden_size (e.g. (batch, hidden_size)), and step must "
            "accept x_t (batch, input_size).",
        ) from error
    require(
        isinstance(h, Tensor) and tuple(h.shape) == (2, 4),
        f"step(x_t (2, 3), state) returned an output {describe(h)}; expected Tensor(2, 4)",
        "step returns (h_t, new_state) with h_t of shape (batch, hidden_size).",
    )
    new_state = check_state(new_state, 2, "step")
    require(
        [s.shape for s in new_state] == [s.shape for s in state],
        f"step changed the state's shapes: {describe(state)} -> {describe(new_state)}",
        FIX_STATE,
    )


@register_check("cell")
def check_shapes(subject: Subject) -> None:
    """``forward`` and ``step`` give the right shapes over drawn batch, time and sizes.

    For ``x`` of shape ``(B, T, I)``: ``forward(x)`` and ``forward(x, initial_state(B))`` return
    outputs ``(B, T, H)`` and a state with the same structure and shapes as ``initial_state(B)``.
    """

    def test(dims: CellDims, seed: int) -> None:
        cell = make_cell(subject, dims.input_size, dims.hidden_size, torch.float32, seed)
        b, t, h = dims.batch, dims.time, dims.hidden_size
        x = torch.randn(b, t, dims.input_size)
        initial = check_state(cell.initial_state(b), b, f"initial_state({b})")
        for state, call in ((None, "forward(x)"), (initial, "forward(x, initial_state(B))")):
            out, final = cell(x, state)
            require(
                isinstance(out, Tensor) and tuple(out.shape) == (b, t, h),
                f"{call} with x {tuple(x.shape)} returned outputs {describe(out)}; "
                f"expected Tensor{(b, t, h)}",
                "forward returns (outputs (B, T, H), state); a cell that only writes step gets "
                "this from the core's loop.",
            )
            final = check_state(final, b, call)
            require(
                [s.shape for s in final] == [s.shape for s in initial],
                f"{call} returned a state {describe(final)}; initial_state gave "
                f"{describe(initial)}",
                FIX_STATE,
            )

    for_drawn(test)


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
    cell = make_cell(subject, 3, 4, F64)
    targets = [("meta", F64), ("cpu", torch.float32)]
    if torch.cuda.is_available():
        targets.append(("cuda", torch.float32))
    for device, dtype in targets:
        made = check_state(
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
    source = make_cell(subject, 3, 4, torch.float32, seed=1)
    target = make_cell(subject, 3, 4, torch.float32, seed=2)
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
    first = make_cell(subject, 3, 4, torch.float32, seed=1234)
    second = make_cell(subject, 3, 4, torch.float32, seed=1234)
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
def check_no_nan_long_sequence(subject: Subject) -> None:
    """500 steps of standard-normal input (B=2, I=4, H=8) give finite outputs and state."""
    cell = make_cell(subject, 4, 8, torch.float32)
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
