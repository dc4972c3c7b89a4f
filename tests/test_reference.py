"""The numpy reference: forward and backward equal torch autograd on the built-in cells."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.nn import functional as F

from charseq import reference as ref
from charseq.builtins.cells import GRUCell, LSTMCell, RNNCell
from charseq.loop import unroll

CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
kinds = pytest.mark.parametrize("kind", list(CELLS))


@st.composite
def problems(draw) -> dict:
    """Sizes T, B, I, H and a seed for one sequence problem."""
    return {
        "T": draw(st.integers(1, 5)),
        "B": draw(st.integers(1, 3)),
        "I": draw(st.integers(1, 4)),
        "H": draw(st.integers(1, 4)),
        "seed": draw(st.integers(0, 2**16)),
    }


def setup(kind: str, p: dict):
    """A float64 built-in cell, its parameters as numpy, and random x, initial state, dL/dh."""
    torch.manual_seed(p["seed"])
    cell = CELLS[kind](p["I"], p["H"], dtype=torch.float64)
    params = {
        "W_ih": cell.weight_ih.detach().numpy().copy(),
        "W_hh": cell.weight_hh.detach().numpy().copy(),
        "b_ih": cell.bias_ih.detach().numpy().copy(),
        "b_hh": cell.bias_hh.detach().numpy().copy(),
    }
    rng = np.random.default_rng(p["seed"])
    T, B, H = p["T"], p["B"], p["H"]
    data = {
        "x": rng.standard_normal((T, B, p["I"])),
        "h0": rng.standard_normal((B, H)),
        "c0": rng.standard_normal((B, H)),
        "dhs": rng.standard_normal((T, B, H)),  # the loss is sum(hs * dhs) (+ sum(c_T * dc))
        "dc": rng.standard_normal((B, H)),
    }
    return cell, params, data


def numpy_run(kind: str, params, data):
    """Forward and backward in numpy: ``(hs (T, B, H), c_T or None, grads)``."""
    x, h0, c0, dhs = data["x"], data["h0"], data["c0"], data["dhs"]
    if kind == "lstm":
        hs, cs, cache = ref.lstm_forward(x, h0, c0, params)
        return hs, cs[-1], ref.lstm_backward(dhs, cache, dc_last=data["dc"])
    forward, backward = {"rnn": (ref.rnn_forward, ref.rnn_backward)}.get(
        kind, (ref.gru_forward, ref.gru_backward)
    )
    hs, cache = forward(x, h0, params)
    return hs, None, backward(dhs, cache)


def loss_of(kind: str, params, data) -> float:
    hs, c_last, _ = numpy_run(kind, params, data)
    loss = np.sum(hs * data["dhs"])
    return loss + (np.sum(c_last * data["dc"]) if kind == "lstm" else 0.0)


@kinds
@given(p=problems())
def test_forward_and_backward_equal_torch_autograd(kind, p):
    cell, params, data = setup(kind, p)
    # torch: batch-first, autograd through the core's step loop over the built-in cell.
    x = torch.from_numpy(data["x"].transpose(1, 0, 2)).requires_grad_()  # (B, T, I)
    names = ("h0", "c0") if kind == "lstm" else ("h0",)
    state = tuple(torch.from_numpy(data[k]).requires_grad_() for k in names)
    out, new_state = unroll(cell, x, state)  # (B, T, H)
    loss = (out * torch.from_numpy(data["dhs"].transpose(1, 0, 2))).sum()
    if kind == "lstm":
        loss = loss + (new_state[1] * torch.from_numpy(data["dc"])).sum()
    loss.backward()

    hs, c_last, grads = numpy_run(kind, params, data)
    torch.testing.assert_close(torch.from_numpy(hs.transpose(1, 0, 2)), out.detach())
    if kind == "lstm":
        torch.testing.assert_close(torch.from_numpy(c_last), new_state[1].detach())
    expected = {
        "dW_ih": cell.weight_ih.grad,
        "dW_hh": cell.weight_hh.grad,
        "db_ih": cell.bias_ih.grad,
        "db_hh": cell.bias_hh.grad,
        "dx": x.grad.transpose(0, 1),  # back to (T, B, I)
        "dh0": state[0].grad,
    }
    if kind == "lstm":
        expected["dc0"] = state[1].grad
    assert set(grads) == set(expected)
    for name, want in expected.items():
        torch.testing.assert_close(torch.from_numpy(grads[name]), want, msg=name)


@kinds
@pytest.mark.parametrize("seed", [0, 1])
def test_backward_matches_numerical_gradient(kind, seed):
    """As min-char-rnn's gradient check: central differences on a few entries of each array."""
    _, params, data = setup(kind, {"T": 4, "B": 2, "I": 3, "H": 3, "seed": seed})
    _, _, grads = numpy_run(kind, params, data)
    rng = np.random.default_rng(seed)
    arrays = {**{"d" + k: v for k, v in params.items()}, "dx": data["x"], "dh0": data["h0"]}
    if kind == "lstm":
        arrays["dc0"] = data["c0"]
    eps = 1e-5
    for name, array in arrays.items():
        for _ in range(3):
            index = tuple(rng.integers(0, n) for n in array.shape)
            saved = array[index]
            array[index] = saved + eps
            up = loss_of(kind, params, data)
            array[index] = saved - eps
            down = loss_of(kind, params, data)
            array[index] = saved
            numerical, analytic = (up - down) / (2 * eps), grads[name][index]
            relative = abs(numerical - analytic) / max(abs(numerical) + abs(analytic), 1e-12)
            assert relative < 1e-6 or abs(numerical - analytic) < 1e-9, (name, index)


@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    vocab=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_softmax_and_cross_entropy_equal_torch(shape, vocab, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((*shape, vocab)) * 3
    targets = rng.integers(0, vocab, size=shape)

    torch.testing.assert_close(
        torch.from_numpy(ref.softmax(logits)), torch.softmax(torch.from_numpy(logits), dim=-1)
    )
    torch.testing.assert_close(
        torch.from_numpy(ref.one_hot(targets, vocab)),
        F.one_hot(torch.from_numpy(targets), vocab).double(),
    )
    loss, dlogits = ref.cross_entropy(logits, targets)
    t_logits = torch.from_numpy(logits).requires_grad_()
    t_loss = F.cross_entropy(t_logits.reshape(-1, vocab), torch.from_numpy(targets).reshape(-1))
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    torch.testing.assert_close(torch.from_numpy(dlogits), t_logits.grad)


def test_softmax_does_not_overflow():
    p = ref.softmax(np.array([1000.0, 1000.0, -1000.0]))
    np.testing.assert_allclose(p, [0.5, 0.5, 0.0])


@kinds
def test_init_params(kind):
    params = ref.init_params(np.random.default_rng(0), 3, 4, kind)
    G = ref.GATES[kind]
    assert {k: v.shape for k, v in params.items()} == {
        "W_ih": (G * 4, 3),
        "W_hh": (G * 4, 4),
        "b_ih": (G * 4,),
        "b_hh": (G * 4,),
    }
    assert all(np.abs(v).max() <= 0.5 and v.dtype == np.float64 for v in params.values())


def test_docstring_examples():
    result = doctest.testmod(ref)
    assert result.attempted > 0 and result.failed == 0
