"""The MGU cell passes charseq's conformance kit, and its entry point loads."""

import torch
from charseq_mgu import MGUCell

from charseq.testing import check_plugin_installed, parametrize_with_checks


@parametrize_with_checks(["cell:mgu"])
def test_conformance(component, check):
    check(component)


def test_plugin_installed():
    registered = check_plugin_installed("charseq-mgu")
    assert [(c.kind, c.name) for c in registered] == [("cell", "mgu")]
    assert registered[0].factory is MGUCell


def test_step_follows_the_equations():
    torch.manual_seed(0)
    cell = MGUCell(3, 2)
    x, h = torch.randn(4, 3), torch.randn(4, 2)
    w_f, w_h = cell.weight_ih.chunk(2)
    u_f, u_h = cell.weight_hh.chunk(2)
    b_f, b_h = cell.bias.chunk(2)
    f = torch.sigmoid(x @ w_f.T + h @ u_f.T + b_f)
    h_tilde = torch.tanh(x @ w_h.T + (f * h) @ u_h.T + b_h)
    out, (state,) = cell.step(x, (h,))
    torch.testing.assert_close(out, (1 - f) * h + f * h_tilde)
    assert state is out


def test_without_bias():
    cell = MGUCell(3, 2, bias=False)
    assert cell.bias is None and len(list(cell.parameters())) == 2
    out, _ = cell(torch.randn(2, 5, 3))
    assert out.shape == (2, 5, 2)


def test_docstring_example():
    import doctest

    import charseq_mgu

    result = doctest.testmod(charseq_mgu)
    assert result.attempted > 0 and result.failed == 0
