"""The built-in cells: equal to torch.nn's, fused path equal to the step loop, gradients right."""

from __future__ import annotations

import doctest

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import charseq
from charseq.builtins import cells as builtin_cells
from charseq.builtins.cells import GRUCell, GRUOptions, LSTMCell, LSTMOptions, RNNCell, RNNOptions
from charseq.errors import SpecError
from charseq.loop import unroll
from charseq.model import CellStack, CharModel
from charseq.options import build_options, options_to_dict

# name -> (our cell, torch's cell, torch's multi-layer module, our options)
KINDS = {
    "rnn": (RNNCell, nn.RNNCell, nn.RNN, RNNOptions),
    "lstm": (LSTMCell, nn.LSTMCell, nn.LSTM, LSTMOptions),
    "gru": (GRUCell, nn.GRUCell, nn.GRU, GRUOptions),
}
kinds = pytest.mark.parametrize("kind", list(KINDS))


@st.composite
def stacks(draw, max_layers: int = 3) -> dict:
    """Coherent sizes for a stack: batch B, time T, input I, hidden H, layers L, bias, seed."""
    return {
        "B": draw(st.integers(1, 3)),
        "T": draw(st.integers(1, 5)),
        "I": draw(st.integers(1, 5)),
        "H": draw(st.integers(1, 5)),
        "L": draw(st.integers(1, max_layers)),
        "bias": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
    }


def make_stack(kind: str, s: dict, dtype: torch.dtype = torch.float32) -> list:
    torch.manual_seed(s["seed"])
    cls = KINDS[kind][0]
    sizes = [s["I"]] + [s["H"]] * s["L"]
    return [
        cls(i, h, bias=s["bias"], dtype=dtype) for i, h in zip(sizes[:-1], sizes[1:], strict=True)
    ]


def random_state(cell, batch: int) -> tuple:
    """A non-zero state, so that the tests see h0 (and c0) being used."""
    return tuple(torch.randn_like(s) for s in cell.initial_state(batch))


def step_loop(cells, x, state):
    """The reference the fused path must equal: the core's loop, layer by layer (no dropout)."""
    new_state = []
    for cell, layer_state in zip(cells, state, strict=True):
        x, layer_state = unroll(cell, x, layer_state)  # (B, T, H)
        new_state.append(layer_state)
    return x, new_state


def fused(cells, x, state, dropout: float = 0.0, training: bool = False):
    result = type(cells[0]).forward_stack(cells, x, state, dropout, training)
    assert result is not None, "the fused kernel declined a stack it should run"
    return result


def to_torch_module(kind: str, cells) -> nn.RNNBase:
    """torch.nn.{RNN,LSTM,GRU}(num_layers=L, batch_first=True) holding a copy of our weights."""
    first = cells[0]
    module = KINDS[kind][2](
        first.input_size,
        first.hidden_size,
        num_layers=len(cells),
        bias=first.bias,
        batch_first=True,
        dtype=first.weight_ih.dtype,
    )
    with torch.no_grad():
        for layer, cell in enumerate(cells):
            for name, value in cell.named_parameters():
                getattr(module, f"{name}_l{layer}").copy_(value)
    return module


def flat(state) -> list:
    return [t for layer in state for t in layer]


# -- equal to torch.nn -----------------------------------------------------------------------------


@kinds
@given(s=stacks(max_layers=1))
def test_same_seed_same_weights_as_torch_cell(kind, s):
    ours_cls, torch_cls = KINDS[kind][:2]
    torch.manual_seed(s["seed"])
    ours = ours_cls(s["I"], s["H"], bias=s["bias"])
    torch.manual_seed(s["seed"])
    theirs = torch_cls(s["I"], s["H"], bias=s["bias"])
    ours_params, theirs_params = dict(ours.named_parameters()), dict(theirs.named_parameters())
    assert list(ours_params) == list(theirs_params)
    for name, value in theirs_params.items():
        assert torch.equal(ours_params[name], value), name


@kinds
@given(s=stacks(max_layers=1))
def test_step_equals_torch_cell(kind, s):
    (cell,) = make_stack(kind, s)
    torch.manual_seed(s["seed"])
    theirs = KINDS[kind][1](s["I"], s["H"], bias=s["bias"])
    x_t = torch.randn(s["B"], s["I"])
    state = random_state(cell, s["B"])
    h, new_state = cell.step(x_t, state)
    expected = theirs(x_t, state if kind == "lstm" else state[0])
    expected = expected if kind == "lstm" else (expected,)
    torch.testing.assert_close(h, expected[0])
    for got, want in zip(new_state, expected, strict=True):
        torch.testing.assert_close(got, want)


@kinds
@given(s=stacks())
def test_fused_stack_equals_torch_module(kind, s):
    cells = make_stack(kind, s)
    module = to_torch_module(kind, cells)
    x = torch.randn(s["B"], s["T"], s["I"])
    state = [random_state(cell, s["B"]) for cell in cells]
    out, new_state = fused(cells, x, state)
    # torch.nn wants each state part as one (L, B, H) tensor.
    parts = [torch.stack(part) for part in zip(*state, strict=True)]
    expected_out, expected_parts = module(x, tuple(parts) if kind == "lstm" else parts[0])
    expected_parts = expected_parts if kind == "lstm" else (expected_parts,)
    torch.testing.assert_close(out, expected_out)
    for got, want in zip(zip(*new_state, strict=True), expected_parts, strict=True):
        torch.testing.assert_close(torch.stack(got), want)


# -- fused == the core's step loop -----------------------------------------------------------------


@kinds
@given(s=stacks(), training=st.booleans())
def test_fused_stack_equals_step_loop(kind, s, training):
    cells = make_stack(kind, s)
    x = torch.randn(s["B"], s["T"], s["I"])
    state = [random_state(cell, s["B"]) for cell in cells]
    out, new_state = fused(cells, x, state, dropout=0.0, training=training)
    expected_out, expected_state = step_loop(cells, x, state)
    torch.testing.assert_close(out, expected_out)
    torch.testing.assert_close(flat(new_state), flat(expected_state))
    assert all(t.shape == (s["B"], s["H"]) for t in flat(new_state))


@kinds
@given(s=stacks())
def test_cell_stack_and_cell_forward_equal_step_loop(kind, s):
    cells = make_stack(kind, s)
    x = torch.randn(s["B"], s["T"], s["I"])
    state = [random_state(cell, s["B"]) for cell in cells]
    expected_out, expected_state = step_loop(cells, x, state)
    for stack in (CellStack(cells, fused=True), CellStack(cells, fused=False)):
        out, new_state = stack(x, state)
        torch.testing.assert_close(out, expected_out)
        torch.testing.assert_close(flat(new_state), flat(expected_state))
    # One cell's forward (fused, one layer), with a given state and with the default zeros.
    cell = cells[0]
    for layer_state in (state[0], None):
        out, new_state = cell(x, layer_state)
        torch.testing.assert_close((out, new_state), unroll(cell, x, layer_state))


@kinds
@given(s=stacks(), dropout=st.floats(0.2, 0.8))
def test_fused_dropout_only_between_layers(kind, s, dropout):
    cells = make_stack(kind, s)
    x = torch.randn(s["B"], s["T"], s["I"])
    state = [random_state(cell, s["B"]) for cell in cells]
    out, new_state = fused(cells, x, state, dropout=dropout, training=True)
    # The bottom layer sees no dropout; with one layer nothing is dropped at all.
    _, expected_bottom = unroll(cells[0], x, state[0])
    torch.testing.assert_close(new_state[0], expected_bottom)
    if len(cells) == 1:
        torch.testing.assert_close(out, unroll(cells[0], x, state[0])[0])
    # In eval mode dropout is off.
    torch.testing.assert_close(
        fused(cells, x, state, dropout=dropout, training=False)[0], step_loop(cells, x, state)[0]
    )


# -- gradients -------------------------------------------------------------------------------------


class Stack(nn.Module):
    """A stack run either by the fused kernel or by the step loop, for functional_call."""

    def __init__(self, cells, use_fused: bool) -> None:
        super().__init__()
        self.cells = nn.ModuleList(cells)
        self.use_fused = use_fused

    def forward(self, x, state):
        cells = list(self.cells)
        return fused(cells, x, state) if self.use_fused else step_loop(cells, x, state)


def as_function(stack: Stack, state_template):
    """``f(x, *state_tensors, *parameters) -> (outputs, *new_state_tensors)`` for gradcheck."""
    names = [name for name, _ in stack.named_parameters()]
    sizes = [len(layer) for layer in state_template]
    n_state = sum(sizes)

    def f(x, *tensors):
        it = iter(tensors[:n_state])
        state = [tuple(next(it) for _ in range(size)) for size in sizes]
        params = dict(zip(names, tensors[n_state:], strict=True))
        out, new_state = torch.func.functional_call(stack, params, (x, state))
        return (out, *flat(new_state))

    return f


@kinds
@pytest.mark.parametrize("use_fused", [False, True], ids=["step_loop", "fused"])
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck(kind, use_fused, bias):
    s = {"B": 2, "T": 3, "I": 2, "H": 2, "L": 2, "bias": bias, "seed": 0}
    cells = make_stack(kind, s, dtype=torch.float64)
    x = torch.randn(s["B"], s["T"], s["I"], dtype=torch.float64, requires_grad=True)
    state = [random_state(cell, s["B"]) for cell in cells]
    inputs = [x, *(t.requires_grad_() for t in flat(state))]
    inputs += [p.detach().clone().requires_grad_() for p in Stack(cells, use_fused).parameters()]
    assert torch.autograd.gradcheck(as_function(Stack(cells, use_fused), state), tuple(inputs))


@kinds
@given(s=stacks())
def test_fused_gradients_equal_step_loop(kind, s):
    cells = make_stack(kind, s, dtype=torch.float64)
    params = [p for cell in cells for p in cell.parameters()]
    x = torch.randn(s["B"], s["T"], s["I"], dtype=torch.float64, requires_grad=True)
    state = [tuple(t.requires_grad_() for t in random_state(cell, s["B"])) for cell in cells]
    wrt = [x, *flat(state), *params]
    grads = []
    for run in (fused, step_loop):
        out, new_state = run(cells, x, state)
        # The same random weighting of every output in both runs (not randn_like: the fused
        # output is a transposed view, and randn_like would fill it in another order).
        torch.manual_seed(1)
        outputs = [out, *flat(new_state)]
        loss = sum((t * torch.randn(t.shape, dtype=t.dtype)).sum() for t in outputs)
        grads.append(torch.autograd.grad(loss, wrt))
    torch.testing.assert_close(grads[0], grads[1])


# -- declining what cannot be fused ----------------------------------------------------------------


@kinds
def test_fused_declines_stacks_it_cannot_run(kind):
    cls = KINDS[kind][0]
    x = torch.randn(2, 3, 4)

    def run(cells, x=x, state=None):
        state = [c.initial_state(2) for c in cells] if state is None else state
        return cls.forward_stack(cells, x, state, 0.0, False)

    assert run([cls(4, 5), cls(5, 5)]) is not None
    assert run([cls(4, 5), cls(5, 6)]) is None  # hidden sizes differ
    assert run([cls(4, 5), cls(5, 5, bias=False)]) is None  # bias settings differ
    assert run([cls(3, 5)]) is None  # input size does not match x
    assert run([cls(4, 5, dtype=torch.float64)]) is None  # dtype differs from x
    assert run([cls(4, 5)], x=x[:, :0]) is None  # empty sequence
    other = next(v[0] for k, v in KINDS.items() if k != kind)
    assert run([cls(4, 5), other(5, 5)], state=[cls(4, 5).initial_state(2)] * 2) is None

    # An empty sequence still runs through forward: no outputs, the state unchanged.
    cell = cls(4, 5)
    out, state = cell(x[:, :0])
    assert out.shape == (2, 0, 5)
    assert all(torch.equal(t, torch.zeros(2, 5)) for t in state)


def doubled(kind: str) -> type:
    """A subclass of the built-in cell ``kind`` whose own step doubles the output."""

    class Doubled(KINDS[kind][0]):
        def step(self, x_t, state):
            h, state = super().step(x_t, state)
            return 2 * h, state

    return Doubled


@kinds
def test_subclass_with_its_own_step_is_not_fused(kind):
    Doubled = doubled(kind)
    torch.manual_seed(0)
    cells = [Doubled(3, 4), Doubled(4, 4)]
    x = torch.randn(2, 5, 3)
    state = [c.initial_state(2) for c in cells]
    assert Doubled.forward_stack(cells, x, state, 0.0, False) is None
    out, _ = CellStack(cells)(x, state)
    torch.testing.assert_close(out, step_loop(cells, x, state)[0])


# -- inference step (numpy, for generation) -------------------------------------------------------


@kinds
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@given(sizes=stacks(max_layers=1))
def test_inference_step_equals_step(kind, dtype, sizes):
    """The numpy step generation runs (one row) equals the torch step, step after step, with
    and without bias; more rows run the torch step itself."""
    torch.manual_seed(sizes["seed"])
    cell = KINDS[kind][0](sizes["I"], sizes["H"], bias=sizes["bias"], dtype=dtype).eval()
    fast = cell.inference_step()
    assert type(fast).__module__ == "charseq.builtins.inference"
    for batch in sorted({1, sizes["B"]}):
        x = torch.randn(batch, sizes["T"], sizes["I"], dtype=dtype)
        state = expected = tuple(0.5 * torch.randn_like(s) for s in cell.initial_state(batch))
        with torch.no_grad():
            for x_t in x.unbind(1):
                want, expected = cell.step(x_t, expected)
                got, state = fast(x_t, state)
                torch.testing.assert_close(got, want)
                torch.testing.assert_close(state, expected)
                assert got.dtype == dtype


@kinds
def test_inference_step_falls_back_to_step(kind):
    """A subclass with its own step, or weights numpy cannot hold, keep the torch step."""
    own_step = doubled(kind)(3, 4)
    assert own_step.inference_step() == own_step.step
    half = KINDS[kind][0](3, 4, dtype=torch.bfloat16)
    assert half.inference_step() == half.step


class PlainTanhCell(RNNCell):
    """An RNN cell whose inference step is its torch step (no numpy step), as a plugin's is."""

    def inference_step(self):
        return self.step


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(
    "layers",
    [
        [LSTMCell(5, 6), LSTMCell(6, 6)],
        [GRUCell(5, 6), RNNCell(6, 4, bias=False), LSTMCell(4, 6)],
        [LSTMCell(5, 6), PlainTanhCell(6, 6)],  # a layer without a numpy step
    ],
    ids=["lstm-lstm", "gru-rnn-lstm", "lstm-plugin"],
)
def test_model_inference_step_equals_step(layers, batch):
    """CharModel.inference_step (what the decoder runs; numpy for one row on the CPU) equals
    CharModel.step in eval mode, fed its own states or any other, and is the step itself in
    training mode (dropout must apply)."""
    torch.manual_seed(0)
    model = CharModel(7, 5, layers, dropout=0.5).eval()
    fast = model.inference_step()
    ids = torch.randint(0, 7, (batch, 4))
    state = expected = model.initial_state(batch)
    with torch.no_grad():
        for t in range(ids.shape[1]):
            want, expected = model.step(ids[:, t], expected)
            got, state = fast(ids[:, t], state)
            torch.testing.assert_close(got, want)
            torch.testing.assert_close(state, expected)
        # an older state (not the one it returned last) and a fresh copy of the last one
        first = model.initial_state(batch)
        torch.testing.assert_close(fast(ids[:, 0], first), model.step(ids[:, 0], first))
        copied = [tuple(s.clone() for s in layer) for layer in state]
        torch.testing.assert_close(fast(ids[:, 1], copied), model.step(ids[:, 1], state))
        _, returned = fast(ids[:, 2], state)
        returned[0] = first[0]  # the list it returned, changed in place
        torch.testing.assert_close(fast(ids[:, 3], returned), model.step(ids[:, 3], returned))
    assert model.train().inference_step() == model.step
    with pytest.raises(ValueError, match=f"expected a state for each of {len(layers)} layers"):
        model.eval().inference_step()(ids[:, 0], state[:1])


def test_model_inference_step_returns_new_tensors_and_checks_ids():
    """The one-row numpy path never writes into a state it returned before, and an id outside
    the vocabulary is an error (numpy would wrap a negative one around)."""
    torch.manual_seed(0)
    model = CharModel(7, 5, [LSTMCell(5, 6)]).eval()
    fast = model.inference_step()
    with torch.no_grad():
        logits, state = fast(torch.tensor([2]), model.initial_state(1))
        kept = [tuple(s.clone() for s in layer) for layer in state]
        fast(torch.tensor([4]), state)
        torch.testing.assert_close(state, kept)
        for bad in (-1, 7):
            with pytest.raises(IndexError, match=f"token id {bad} is out of range for 7 ids"):
                fast(torch.tensor([bad]), state)


def test_a_layer_writing_into_its_input_leaves_the_embedding_alone():
    """One row's embedding is a numpy lookup; a torch step gets a copy, not the table's row."""

    class Scribbles(RNNCell):
        def inference_step(self):
            def step(x_t, state):
                out = self.step(x_t, state)
                x_t.zero_()  # bad manners, but the embedding must not change
                return out

            return step

    torch.manual_seed(0)
    model = CharModel(7, 5, [Scribbles(5, 6)]).eval()
    before = model.embedding.weight.detach().clone()
    with torch.no_grad():
        model.inference_step()(torch.tensor([3]), model.initial_state(1))
    assert torch.equal(model.embedding.weight, before)


def test_model_inference_step_in_float64():
    torch.manual_seed(0)
    model = CharModel(7, 5, [LSTMCell(5, 6), GRUCell(6, 6)]).double().eval()
    fast, state, expected = model.inference_step(), model.initial_state(1), model.initial_state(1)
    with torch.no_grad():
        for token in (3, 1, 4):
            ids = torch.tensor([token])
            got, state = fast(ids, state)
            want, expected = model.step(ids, expected)
            assert got.dtype == torch.float64
            torch.testing.assert_close(got, want)
            torch.testing.assert_close(state, expected)


def test_model_inference_step_without_a_head_bias():
    torch.manual_seed(0)
    model = CharModel(7, 5, [GRUCell(5, 6)]).eval()
    model.head = nn.Linear(6, 7, bias=False)
    state = model.initial_state(1)
    ids = torch.tensor([3])
    with torch.no_grad():
        torch.testing.assert_close(model.inference_step()(ids, state), model.step(ids, state))


def test_subclass_step_is_what_generation_runs():
    class Shifted(CharModel):  # a subclass's own step is what generation must run
        def step(self, ids, state):
            logits, state = super().step(ids, state)
            return logits + 1.0, state

    shifted = Shifted(7, 5, [LSTMCell(5, 6)]).eval()
    assert shifted.inference_step() == shifted.step


# -- state, options, registration ------------------------------------------------------------------


@kinds
def test_initial_state(kind):
    cell = KINDS[kind][0](3, 4, dtype=torch.float64)
    state = cell.initial_state(5)
    assert len(state) == (2 if kind == "lstm" else 1)
    for t in state:
        assert t.shape == (5, 4) and t.dtype == torch.float64 and not t.any()
    assert cell.initial_state(2, dtype=torch.float32)[0].dtype == torch.float32


def test_lstm_forget_bias():
    torch.manual_seed(3)
    plain = LSTMCell(3, 4)
    torch.manual_seed(3)
    shifted = LSTMCell(3, 4, forget_bias=1.0)
    delta = shifted.bias_ih.detach() - plain.bias_ih.detach()
    torch.testing.assert_close(delta, torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 8))
    assert torch.equal(shifted.bias_hh, plain.bias_hh)
    assert "forget_bias=1.0" in repr(shifted)
    with pytest.raises(ValueError, match="forget_bias"):
        LSTMCell(3, 4, bias=False, forget_bias=1.0)
    with pytest.raises(SpecError, match="cell.forget_bias: needs bias = true"):
        build_options(LSTMOptions, {"bias": False, "forget_bias": 1.0}, "cell")


@kinds
def test_registered_as_builtin(kind):
    component = charseq.get_registry().get("cell", kind)
    assert component.factory is KINDS[kind][0]
    assert component.options is KINDS[kind][3]
    assert component.owner.distribution == "charseq"
    assert component.help
    options = build_options(component.options, {"bias": False}, "cell")
    cell = component.factory(3, 4, **options_to_dict(options))
    assert cell.bias is False and cell.bias_ih is None


def test_docstring_examples():
    result = doctest.testmod(builtin_cells, extraglobs={"torch": torch})
    assert result.attempted > 0 and result.failed == 0
