"""Weight drop (``cell.weight_drop``) and locked dropout (``model.dropout_kind = "locked"``):
eval mode unchanged, one mask per sequence in training, gradients, spec errors, plugin cells,
exact resume."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from charseq_mgu import MGUCell
from torch import nn

from charseq import Pipeline, PipelineSpec, SpecError
from charseq.builtins.cells import GRUCell, LSTMCell, RNNCell
from charseq.interfaces import Cell
from charseq.model import CellStack, CharModel, WeightDropError, locked_dropout
from tests._helpers import assert_identical, weights

TEXT = "".join(f"line {i}: the quick brown fox {i % 7} jumps. " for i in range(300))


class Nameless(Cell):
    """A plugin-style cell that names no recurrent weights."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.w = nn.Linear(input_size + hidden_size, hidden_size)

    def initial_state(self, batch_size, device=None, dtype=None):
        return (torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype),)

    def step(self, x_t, state):
        h = torch.tanh(self.w(torch.cat([x_t, state[0]], dim=1)))
        return h, (h,)


def model(weight_drop=0.0, kind="standard", cell=LSTMCell):
    torch.manual_seed(0)
    cells = [cell(5, 6), cell(6, 6)]
    return CharModel(7, 5, cells, 0.3, 0.2, weight_drop=weight_drop, dropout_kind=kind)


IDS = torch.randint(0, 7, (3, 9), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("cell", [LSTMCell, GRUCell, MGUCell])
def test_eval_mode_is_unchanged(cell):
    """In eval mode both options are off: the same logits as a model without them, and a
    training pass leaves the weights as they were (the masked weights are copies)."""
    plain, regular = model(cell=cell).eval(), model(0.5, "locked", cell).eval()
    assert_identical(plain.state_dict(), regular.state_dict())
    with torch.no_grad():
        assert torch.equal(plain(IDS)[0], regular(IDS)[0])
        before = {k: v.clone() for k, v in regular.state_dict().items()}
        regular.train()(IDS)
        assert_identical(before, regular.state_dict())


def test_weight_drop_zero_takes_todays_path(monkeypatch):
    """weight_drop = 0 never goes through functional_call: the fused kernel runs as before."""

    def refuse(*args, **kwargs):
        raise AssertionError("functional_call with weight_drop = 0")

    monkeypatch.setattr(torch.func, "functional_call", refuse)
    model().train()(IDS)


@pytest.mark.parametrize("cell", [RNNCell, LSTMCell, GRUCell, MGUCell])
@pytest.mark.parametrize("fused", [True, False])
def test_weight_drop_uses_one_mask_for_the_whole_sequence(cell, fused):
    """The stack in training equals each cell's step loop run with one masked copy of its
    recurrent weights at every time step (the masks :meth:`dropped_weights` draws from the same
    seed), and differs from the unmasked stack."""
    torch.manual_seed(0)
    cells = [cell(4, 5, bias=True), cell(5, 5, bias=True)]
    stack = CellStack(cells, fused=fused, weight_drop=0.5).train()
    x = torch.randn(2, 7, 4)
    torch.manual_seed(3)
    out, state = stack(x)
    torch.manual_seed(3)
    masked = stack.dropped_weights()
    assert set(masked) == {"cells.0.weight_hh", "cells.1.weight_hh"}
    assert (masked["cells.0.weight_hh"] == 0).any()
    h = x
    for i, layer in enumerate(cells):
        fixed = copy.deepcopy(layer)  # the cell with this call's masked W_hh, for every step
        with torch.no_grad():
            fixed.weight_hh.copy_(masked[f"cells.{i}.weight_hh"])
        s, steps = fixed.initial_state(2), []
        for t in range(h.shape[1]):
            y, s = fixed.step(h[:, t], s)
            steps.append(y)
        h = torch.stack(steps, dim=1)
    torch.testing.assert_close(out, h)
    torch.testing.assert_close(state[-1], s)  # the top layer's final state
    assert not torch.allclose(out, stack.eval()(x)[0])


def test_locked_dropout_mask_is_constant_over_time():
    torch.manual_seed(0)
    x = torch.ones(4, 11, 6)
    y = locked_dropout(x, 0.5)
    assert set(y.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(y, y[:, :1].expand_as(y))  # one (B, 1, F) mask for every step
    assert locked_dropout(x, 0.5, training=False) is x
    assert locked_dropout(x, 0.0) is x


@pytest.mark.parametrize("cell", [LSTMCell, MGUCell])
def test_locked_dropout_in_the_model_is_constant_over_time(cell):
    """Embedding, between-layer and output dropout each multiply by one mask per sequence: the
    ratio of what comes out of each dropout to what went in is the same at every step."""
    net = model(0.0, "locked", cell).train()
    seen = {}

    def keep(name, inputs=True):
        def hook(module, args, output=None):
            seen[name] = (args[0] if inputs else output[0]).detach()

        return hook

    net.stack.register_forward_pre_hook(keep("embedded"))
    net.stack.cells[0].register_forward_hook(lambda m, a, out: seen.update(below=out[0].detach()))
    net.stack.cells[1].register_forward_pre_hook(keep("above"))
    net.stack.register_forward_hook(lambda m, a, out: seen.update(top=out[0].detach()))
    net.head.register_forward_pre_hook(keep("head"))
    net(IDS)
    pairs = {
        "embedding": (seen["embedded"], net.embedding(IDS).detach()),
        "between layers": (seen["above"], seen["below"]),
        "output": (seen["head"], seen["top"]),
    }
    for where, (dropped, whole) in pairs.items():
        mask = dropped / whole  # (B, T, F)
        assert (mask == 0).any(), where
        torch.testing.assert_close(mask, mask[:, :1].expand_as(mask), msg=where)


def test_standard_dropout_is_not_locked():
    """The default kind draws a new mask at every step (what locked changes)."""
    y = nn.functional.dropout(torch.ones(4, 11, 6), 0.5)
    assert not torch.equal(y, y[:, :1].expand_as(y))


def test_gradients_through_both_options():
    """gradcheck (float64) of a 2-layer stack with weight drop and locked dropout, the masks
    fixed by reseeding inside the function: w.r.t. the input and the recurrent weights."""
    torch.manual_seed(0)
    cells = [GRUCell(3, 4).double(), GRUCell(4, 4).double()]
    stack = CellStack(cells, 0.4, weight_drop=0.3, dropout_kind="locked").train()
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    w0 = cells[0].weight_hh.detach().clone().requires_grad_()
    w1 = cells[1].weight_hh.detach().clone().requires_grad_()

    def run(x, w0, w1):
        torch.manual_seed(5)
        weights = {"cells.0.weight_hh": w0, "cells.1.weight_hh": w1}
        return torch.func.functional_call(stack, weights, (x,))[0]

    assert torch.autograd.gradcheck(run, (x, w0, w1))
    out = stack(x)[0]
    out.sum().backward()
    assert all(cell.weight_hh.grad.abs().sum() > 0 for cell in cells)


def test_spec_errors():
    with pytest.raises(SpecError, match=r"cell.weight_drop: must be < 1.0, got 1.0"):
        PipelineSpec.from_dict({"cell": {"weight_drop": 1.0}})
    with pytest.raises(SpecError, match=r"cell.weight_drop: must be >= 0.0"):
        PipelineSpec.from_dict({"cell": {"weight_drop": -0.1}})
    with pytest.raises(SpecError, match=r"model.dropout_kind: .*did you mean 'locked'"):
        PipelineSpec.from_dict({"model": {"dropout_kind": "lockd"}})
    spec = PipelineSpec.from_dict({})
    assert (spec.cell.layout.weight_drop, spec.model.dropout_kind) == (0.0, "standard")


def test_a_cell_without_recurrent_weights_refuses_weight_drop():
    CellStack([Nameless(3, 4)])  # fine without weight drop
    with pytest.raises(WeightDropError, match=r"cell Nameless .*names no recurrent weights"):
        CellStack([Nameless(3, 4)], weight_drop=0.5)

    class Misnamed(Nameless):
        recurrent_weights = ("weight_hh",)

    with pytest.raises(WeightDropError, match=r"has no parameter 'weight_hh'.*w.weight"):
        CellStack([Misnamed(3, 4)], weight_drop=0.5)
    with pytest.raises(ValueError, match="dropout_kind must be one of standard, locked"):
        CellStack([LSTMCell(3, 4)], dropout_kind="variational")


def test_a_spec_naming_a_plugin_cell_with_weights_builds():
    pipe = Pipeline.from_spec(
        {"cell": {"name": "mgu", "hidden_size": 8, "weight_drop": 0.25}}, device="cpu"
    )
    assert pipe.spec.cell.layout.weight_drop == 0.25


def test_a_checkpoint_written_before_loads(tmp_path):
    """A manifest whose spec lacks the new options (one written before them) loads, with the
    options at their defaults."""
    pipe = Pipeline.from_spec(spec(), device="cpu")
    pipe.fit(TEXT, out=tmp_path / "run")
    saved = tmp_path / "run" / "best" / "manifest.json"
    data = json.loads(saved.read_text())
    del data["spec"]["cell"]["weight_drop"], data["spec"]["model"]["dropout_kind"]
    saved.write_text(json.dumps(data))
    loaded = Pipeline.load(tmp_path / "run" / "best")
    assert (loaded.spec.cell.layout.weight_drop, loaded.spec.model.dropout_kind) == (0, "standard")


def spec(**train):
    return {
        "cell": {"name": "lstm", "hidden_size": 16, "num_layers": 2, "dropout": 0.2},
        "model": {"embedding_size": 8, "embedding_dropout": 0.1},
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"batch_size": 4, "seq_len": 16, "eval_every": 4, "steps": 4, **train},
    }


def test_resume_with_both_options_is_bit_identical(tmp_path):
    regular = spec(steps=8)
    regular["cell"]["weight_drop"] = 0.3
    regular["model"]["dropout_kind"] = "locked"
    whole = Pipeline.from_spec(regular, device="cpu")
    whole.fit(TEXT, out=tmp_path / "whole")
    half = Pipeline.from_spec({**regular, "train": {**regular["train"], "steps": 4}}, device="cpu")
    half.fit(TEXT, out=tmp_path / "half")
    resumed = Pipeline.resume(tmp_path / "half", text=TEXT, steps=8, device="cpu")
    assert resumed.last_run.step == 8
    assert_identical(weights(whole), weights(resumed))
    plain = Pipeline.from_spec(spec(steps=8), device="cpu")
    plain.fit(TEXT, out=tmp_path / "plain")
    assert not torch.equal(weights(plain)["head.weight"], weights(whole)["head.weight"])


def test_the_classifier_takes_both_options():
    from charseq.classify.model import build_classifier
    from charseq.registry import get_registry

    spec = PipelineSpec.from_dict(
        {
            "task": {"name": "classify"},
            "cell": {"name": "gru", "hidden_size": 8, "weight_drop": 0.3},
            "model": {"embedding_size": 4, "dropout_kind": "locked"},
        }
    )
    stack = build_classifier(spec, get_registry(), 10, 3).stack
    assert (stack.weight_drop, stack.dropout_kind) == (0.3, "locked")
