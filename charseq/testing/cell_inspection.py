"""The conformance check for inspection: what :mod:`charseq.inspect` records of a cell is what
the cell computes.

Inspection needs nothing from a cell's author (it wraps the cell's ``step``), so this check
holds every cell to it: the recorded outputs and states equal the step loop's, the recorded
next-token distribution equals the model's own forward (a fused one included), and the optional
:meth:`~charseq.Cell.internals` keep their contract (batch first, state left alone).
"""

from __future__ import annotations

import torch

from charseq.inspect.activations import record_activations
from charseq.loop import unroll
from charseq.model import CharModel
from charseq.testing._base import Subject, assert_close, describe, register_check, require
from charseq.testing._cell_harness import F64, for_drawn, make_cell, random_state
from charseq.testing.strategies import CellDims

__all__ = ["check_activations_match_step"]

VOCAB = 7

FIX_INTERNALS = (
    "internals(x_t, state) must return a dict of tensors with the batch first, computed from "
    "its arguments without changing them; or leave it out (the default is none)."
)


@register_check("cell")
def check_activations_match_step(subject: Subject) -> None:
    """What ``charseq.inspect`` records of the cell equals its step loop.

    A two-layer model of the cell, in float64, runs a drawn text through
    :func:`~charseq.inspect.record_activations`: each layer's recorded output equals that
    layer's ``step`` loop fed the recorded output below it, each recorded state's last row
    equals the loop's final state, and the next-token distribution equals the model's own
    forward. A cell with :meth:`~charseq.Cell.internals` must return tensors with the batch
    first and leave the state it is given as it was.
    """

    def test(dims: CellDims, seed: int) -> None:
        cells = [
            make_cell(subject, dims.input_size, dims.hidden_size, F64, seed),
            make_cell(subject, dims.hidden_size, dims.hidden_size, F64, seed + 1),
        ]
        model = CharModel(VOCAB, dims.input_size, cells).to(F64).eval()
        gen = torch.Generator().manual_seed(seed)
        ids = torch.randint(VOCAB, (dims.time,), generator=gen)
        acts = record_activations(
            model, ids.tolist(), tokens=["x"] * dims.time, vocab=["x"] * VOCAB
        )
        fix = (
            "charseq.inspect runs each layer's step(x_t, state) over time; it differs from the "
            "model's forward only if the cell's forward (or forward_stack) computes something "
            "else than its step, or if step changes with how often it is called."
        )
        with torch.no_grad():
            logits, _ = model(ids[None])  # (1, T, V)
            assert_close(
                torch.from_numpy(acts.probs).double(),
                logits[0].softmax(-1),
                "the recorded next-token distribution differs from the model's forward",
                fix,
                rtol=1e-5,
                atol=1e-6,
            )
            x = model.embedding(ids[None])  # (1, T, E)
            for layer, cell in enumerate(cells):
                x, state = unroll(cell, x)  # (1, T, H), the state after the last step
                recorded = {trace.name: trace for trace in acts.traces if trace.layer == layer}
                output = next(t for t in recorded.values() if t.role == "output")
                what = f"layer {layer}"
                assert_close(
                    torch.from_numpy(output.values).double(), x[0], f"{what}: outputs differ", fix,
                    rtol=1e-5, atol=1e-6,
                )  # fmt: skip
                names = list(cell.state_names)[: len(state)]
                names += [f"state{i}" for i in range(len(names), len(state))]
                for name, part in zip(names, state, strict=True):
                    if name not in recorded and name.startswith("state"):
                        name = "output"  # an unnamed state equal to the output, kept as it
                    require(
                        name in recorded,
                        f"{what}: state {name!r} was not recorded (recorded: {sorted(recorded)})",
                        fix,
                    )
                    assert_close(
                        torch.from_numpy(recorded[name].values[-1]).double(), part.reshape(-1),
                        f"{what}: the recorded state {name!r} differs from the step loop's", fix,
                        rtol=1e-5, atol=1e-6,
                    )  # fmt: skip
            _check_internals(cells[0], dims, seed)

    for_drawn(test)


def _check_internals(cell: torch.nn.Module, dims: CellDims, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    x_t = torch.randn(dims.batch, dims.input_size, dtype=F64, generator=gen)
    state = random_state(cell, dims.batch, F64, gen)
    before = [s.clone() for s in state]
    with torch.no_grad():
        internals = cell.internals(x_t, state)
    require(
        isinstance(internals, dict),
        f"internals(x_t, state) returned {describe(internals)}, not a dict",
        FIX_INTERNALS,
    )
    for name, value in internals.items():
        require(
            isinstance(name, str) and name.isidentifier(),
            f"internals(x_t, state) named a value {name!r}; names are identifiers, like 'f'",
            FIX_INTERNALS,
        )
        require(
            isinstance(value, torch.Tensor) and value.dim() >= 1 and len(value) == dims.batch,
            f"internals(x_t, state)[{name!r}] is {describe(value)} for a batch of "
            f"{dims.batch}: the batch must come first",
            FIX_INTERNALS,
        )
    assert_close(
        list(state), before, "internals(x_t, state) changed the state it was given", FIX_INTERNALS
    )
