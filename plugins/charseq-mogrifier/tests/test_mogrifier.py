"""The Mogrifier LSTM passes charseq's conformance kit, its entry point loads, and its step
follows the paper's equations (checked by hand on a 2-unit example)."""

import functools
import math

import pytest
import torch
from charseq_mogrifier import MogrifierLSTMCell, MogrifierOptions

import charseq
from charseq.testing import check_plugin_installed, parametrize_with_checks

# The registered cell with its defaults (5 full-rank rounds), and a low-rank one.
LOW_RANK = functools.partial(MogrifierLSTMCell, rounds=4, rank=2)


@parametrize_with_checks(["cell:mogrifier", LOW_RANK])
def test_conformance(component, check):
    check(component)


def test_plugin_installed():
    registered = check_plugin_installed("charseq-mogrifier")
    assert [(c.kind, c.name) for c in registered] == [("cell", "mogrifier")]
    assert registered[0].factory is MogrifierLSTMCell
    assert registered[0].options is MogrifierOptions


def test_options_are_checked():
    assert MogrifierOptions() == MogrifierOptions(rounds=5, rank=0, bias=True)
    with pytest.raises(ValueError, match="must be >= 0"):
        MogrifierOptions(rounds=-1)


def test_parameter_shapes():
    full = MogrifierLSTMCell(3, 2, rounds=5)
    assert full.weight_q.shape == (3, 3, 2) and full.weight_r.shape == (2, 2, 3)
    low = MogrifierLSTMCell(3, 2, rounds=5, rank=1)
    assert low.weight_q_left.shape == (3, 3, 1) and low.weight_q_right.shape == (3, 1, 2)
    assert low.weight_r_left.shape == (2, 2, 1) and low.weight_r_right.shape == (2, 1, 3)
    assert MogrifierLSTMCell(3, 2, rounds=1).weight_r is None
    no_bias = MogrifierLSTMCell(3, 2, rounds=0, bias=False)
    assert [name for name, _ in no_bias.named_parameters()] == ["weight_ih", "weight_hh"]


def test_zero_rounds_is_torch_lstm():
    """rounds=0: the same weights as torch.nn.LSTMCell under one seed, and the same step."""
    torch.manual_seed(0)
    cell = MogrifierLSTMCell(3, 4, rounds=0)
    torch.manual_seed(0)
    lstm = torch.nn.LSTMCell(3, 4)
    assert cell.state_dict().keys() == lstm.state_dict().keys()
    for name, weight in lstm.state_dict().items():
        torch.testing.assert_close(cell.state_dict()[name], weight, rtol=0, atol=0)
    x, h, c = torch.randn(5, 3), torch.randn(5, 4), torch.randn(5, 4)
    out, (h1, c1) = cell.step(x, (h, c))
    want_h, want_c = lstm(x, (h, c))
    torch.testing.assert_close((out, h1, c1), (want_h, want_h, want_c))


def test_mogrification_by_hand():
    """Two units, three rounds, every number worked out on paper."""
    cell = MogrifierLSTMCell(2, 2, rounds=3)
    with torch.no_grad():
        cell.weight_q.copy_(torch.tensor([[[1.0, 0.0], [0.0, -1.0]], [[0.0, 1.0], [1.0, 0.0]]]))
        cell.weight_r.copy_(torch.tensor([[[1.0, 1.0], [0.0, 0.0]]]))
    x, h = torch.tensor([[1.0, 2.0]]), torch.tensor([[math.log(3), 0.5]])

    def s(v: float) -> float:
        return 1 / (1 + math.exp(-v))

    # round 1: x = 2 sigmoid(Q1 h) x, Q1 h = (log 3, -0.5), and 2 sigmoid(log 3) = 1.5
    x1 = [1.5 * 1.0, 2 * s(-0.5) * 2.0]
    # round 2: h = 2 sigmoid(R2 x1) h, R2 x1 = (x1[0] + x1[1], 0): the second unit stays
    h2 = [2 * s(x1[0] + x1[1]) * math.log(3), 1.0 * 0.5]
    # round 3: x = 2 sigmoid(Q3 h2) x1, Q3 h2 = (h2[1], h2[0])
    x3 = [2 * s(h2[1]) * x1[0], 2 * s(h2[0]) * x1[1]]
    x_mog, h_mog = cell.mogrify(x, h)
    torch.testing.assert_close(x_mog, torch.tensor([x3]))
    torch.testing.assert_close(h_mog, torch.tensor([h2]))


def test_step_is_an_lstm_step_on_the_mogrified_input_and_state():
    torch.manual_seed(1)
    cell = MogrifierLSTMCell(3, 4, rounds=5, rank=2)
    lstm = torch.nn.LSTMCell(3, 4)
    lstm.load_state_dict({k: v for k, v in cell.state_dict().items() if k in lstm.state_dict()})
    x, h, c = torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4)
    x_mog, h_mog = cell.mogrify(x, h)
    out, (h1, c1) = cell.step(x, (h, c))
    want_h, want_c = lstm(x_mog, (h_mog, c))  # c is not mogrified
    torch.testing.assert_close((out, h1, c1), (want_h, want_h, want_c))


def test_low_rank_factors_multiply():
    torch.manual_seed(2)
    low = MogrifierLSTMCell(3, 4, rounds=2, rank=2)
    full = MogrifierLSTMCell(3, 4, rounds=2)
    with torch.no_grad():
        full.weight_q.copy_(low.weight_q_left @ low.weight_q_right)
        full.weight_r.copy_(low.weight_r_left @ low.weight_r_right)
    x, h = torch.randn(2, 3), torch.randn(2, 4)
    torch.testing.assert_close(low.mogrify(x, h), full.mogrify(x, h))


def test_trains_from_a_spec():
    """A few seconds of training on a tiny text: the loss falls well below a uniform guess."""
    spec = {
        "cell": {"name": "mogrifier", "hidden_size": 32, "rounds": 5, "rank": 4},
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"steps": 80, "batch_size": 8, "seq_len": 24},
    }
    pipe = charseq.Pipeline.from_spec(spec, device="cpu")
    pipe.fit("abcabcabd " * 200)
    score = pipe.score("abcabcabd " * 3)
    assert score.bpc < 1.0, score.summary()  # a uniform guess over the 5 characters: 2.32 BPC


def test_docstring_example():
    import doctest

    import charseq_mogrifier

    result = doctest.testmod(charseq_mogrifier)
    assert result.attempted > 0 and result.failed == 0
