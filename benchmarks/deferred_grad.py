"""A probe: the weight gradient of a step-only cell computed over the whole sequence at once.

Backpropagation through ``unroll`` (the core's loop over time) computes, at every time step,
the gradients of the step's inputs, of its state *and* of the cell's weights: for an LSTM
written as ``step``, three small matrix products per step where cuDNN does one (the state's)
and computes the weight gradient as one large product after the loop. This probe tries that
for any cell, knowing nothing of its insides, in a custom autograd function:

1. forward: the plain step loop, with each step's state inputs made nodes of their own;
2. backward, through time: one ``autograd.grad`` over the whole chain asking only for the
   gradients of those state inputs, so autograd skips every weight- and input-gradient
   product (they lead nowhere it was asked to go);
3. backward, batched: the step recomputed once on all ``T * B`` rows (the saved inputs and
   states, stacked), and ``autograd.grad`` of it against the cotangents of every step's
   outputs (the loss's, and the state gradients of step 2) gives the weights' and the
   inputs' gradients in large products.

It holds for a cell whose step treats rows independently and draws nothing at random
(``check`` compares it with ``unroll`` in float64 before timing). The price is step 3's
recomputation: one more forward pass, in large products.

Timed against ``unroll``, forward and backward of one layer (input size = hidden size), round
by round in one process; one JSON line per contender with characters (``B * T``) per second,
``vs_unroll`` and, for ``deferred``, the median time of its three phases.

    python benchmarks/deferred_grad.py                          # CPU: the char-rnn size
    python benchmarks/deferred_grad.py --device cuda --config 3x512 --config 3x1024
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import add_common_arguments, emit, machine, ratio, setup, synchronize  # noqa: E402
from step_cells import StepLSTMCell  # noqa: E402
from train_speed import CONFIGS  # noqa: E402

import charseq  # noqa: E402
from charseq.loop import unroll  # noqa: E402


class DeferredUnroll(torch.autograd.Function):
    """``unroll`` whose backward defers the weight and input gradients to one batched pass."""

    phases: dict[str, float] = {}  # seconds of the last call's phases, for the report

    @staticmethod
    def forward(ctx, cell: charseq.Cell, x: Tensor, n_state: int, *flat: Tensor):
        state, params = flat[:n_state], flat[n_state:]
        start = time.perf_counter()
        with torch.enable_grad():
            s = tuple(t.detach().requires_grad_() for t in state)
            inputs, outputs = [], []  # per step: its state inputs; its h_t
            for t, x_t in enumerate(x.detach().unbind(1)):  # T tensors of (B, I)
                if t:
                    s = tuple(a.view_as(a) for a in s)  # step t's own inputs (a node each)
                inputs.append(s)
                h_t, s = cell.step(x_t, s)
                outputs.append(h_t)
        ctx.cell, ctx.params, ctx.inputs, ctx.outputs, ctx.last = cell, params, inputs, outputs, s
        ctx.save_for_backward(x)
        DeferredUnroll.phases = {"forward_s": time.perf_counter() - start}
        return (torch.stack([h.detach() for h in outputs], 1), *(a.detach() for a in s))

    @staticmethod
    def backward(ctx, g_out: Tensor, *g_state: Tensor):
        (x,) = ctx.saved_tensors
        inputs, n = ctx.inputs, len(ctx.inputs[0])
        B, T = x.shape[:2]
        start = time.perf_counter()
        # Through time: only the state inputs' gradients, so no weight or input products.
        grads = torch.autograd.grad(
            [*ctx.outputs, *ctx.last],
            [a for s in inputs for a in s],
            [*g_out.unbind(1), *g_state],
            allow_unused=True,
            materialize_grads=True,
        )
        g_in = [grads[t * n : (t + 1) * n] for t in range(T)]  # step t's state inputs
        ctx.outputs = ctx.last = None  # free the per-step graph
        middle = time.perf_counter()
        # Batched: every step at once, as T * B rows (time-major).
        with torch.enable_grad():
            rows = x.detach().transpose(0, 1).reshape(T * B, -1).requires_grad_()  # (T*B, I)
            states = tuple(torch.cat([s[j] for s in inputs]).detach() for j in range(n))
            h, s = ctx.cell.step(rows, states)  # (T*B, H), state of (T*B, ...) tensors
            g_h = g_out.transpose(0, 1).reshape(T * B, -1)  # (B, T, H) -> (T*B, H)
            g_s = [torch.cat([g[j] for g in g_in[1:]] + [g_state[j]]) for j in range(n)]
            g = torch.autograd.grad([h, *s], [rows, *ctx.params], [g_h, *g_s], allow_unused=True)
        ctx.inputs = None
        DeferredUnroll.phases["through_time_s"] = middle - start
        DeferredUnroll.phases["batched_s"] = time.perf_counter() - middle
        g_x = g[0].view(T, B, -1).transpose(0, 1)  # (T*B, I) -> (B, T, I)
        return (None, g_x, None, *g_in[0], *g[1:])


def deferred_unroll(cell: charseq.Cell, x: Tensor, state) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Drop-in for :func:`charseq.loop.unroll` (with a state given)."""
    out = DeferredUnroll.apply(cell, x, len(state), *state, *cell.parameters())
    return out[0], tuple(out[1:])


def check() -> float:
    """Largest difference from ``unroll`` over every gradient, float64; raises if not tiny."""
    torch.manual_seed(0)
    cell = StepLSTMCell(5, 7).double()
    x = torch.randn(3, 6, 5, dtype=torch.double, requires_grad=True)
    state = tuple(torch.randn(3, 7, dtype=torch.double, requires_grad=True) for _ in range(2))
    wrt = [x, *state, *cell.parameters()]

    def grads(run) -> tuple[Tensor, ...]:
        out, (h, c) = run(cell, x, state)
        loss = out.sin().sum() + c.cos().sum() + h.pow(2).sum()
        return torch.autograd.grad(loss, wrt)

    pairs = zip(grads(unroll), grads(deferred_unroll), strict=True)
    error = max(float((a - b).abs().max()) for a, b in pairs)
    if error > 1e-9:
        raise AssertionError(f"deferred gradients differ from unroll's by {error}")
    return error


def measure(config: str, device: torch.device, rounds: int) -> list[dict]:
    _, hidden, batch, seq_len = CONFIGS[config]
    cell = StepLSTMCell(hidden, hidden).to(device)
    x = torch.randn(batch, seq_len, hidden, device=device, requires_grad=True)
    runs = {"unroll": unroll, "deferred": deferred_unroll}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    phases: list[dict[str, float]] = []
    for _ in range(rounds + 1):  # the first round warms up
        for name, run in runs.items():
            synchronize(device)
            start = time.perf_counter()
            out, _ = run(cell, x, cell.initial_state(batch, device=device))
            out.sum().backward()
            synchronize(device)
            seconds[name].append(time.perf_counter() - start)
        phases.append(dict(DeferredUnroll.phases))
    rate = {name: batch * seq_len / statistics.median(s[1:]) for name, s in seconds.items()}
    size = {"config": config, "hidden": hidden, "batch": batch, "seq_len": seq_len}
    records = []
    for name in runs:
        record = {"benchmark": "deferred_grad", **size, "contender": name}
        record["chars_per_s"] = round(rate[name])
        if name == "deferred":
            record["vs_unroll"] = ratio(rate[name], rate["unroll"])
            for key in phases[0]:
                record[key] = round(statistics.median(p[key] for p in phases[1:]), 5)
        record.update(machine(device))
        records.append(record)
    return records


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--config", action="append", choices=sorted(CONFIGS), help="repeatable")
    args = parser.parse_args(argv)
    device = setup(args)
    emit({"benchmark": "deferred_grad", "check_max_error": check()})
    records = []
    for config in args.config or ["char-rnn"]:
        for record in measure(config, device, args.rounds):
            emit(record)
            records.append(record)
    return records


if __name__ == "__main__":
    main()
