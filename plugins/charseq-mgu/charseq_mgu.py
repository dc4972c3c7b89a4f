r"""A Minimal Gated Unit cell for charseq (Zhou et al., 2016, arXiv:1603.09420).

The whole plugin: an options class, a cell that writes ``initial_state`` and ``step``, and the
hook that registers it. charseq owns the loop over time, stacking, dropout and detaching.
"""

import attrs
import torch
from torch import nn

import charseq


@attrs.frozen(kw_only=True)
class MGUOptions:
    """Options of the ``mgu`` cell (the layout, hidden_size and num_layers, is charseq's)."""

    bias: bool = charseq.option(True, help="add the bias terms b_f and b_h")


class MGUCell(charseq.Cell):
    r"""A Minimal Gated Unit: one forget gate does the work of the GRU's two.

    .. math::
        f_t = \sigma(W_f x_t + U_f h_{t-1} + b_f), \quad
        \tilde h_t = \tanh(W_h x_t + U_h (f_t \odot h_{t-1}) + b_h), \quad
        h_t = (1 - f_t) \odot h_{t-1} + f_t \odot \tilde h_t

    Args:
        input_size: features in the input :math:`x_t`.
        hidden_size: features in the state and output :math:`h_t`.
        bias: add :math:`b_f` and :math:`b_h`. Default: ``True``.

    Shape: step input :math:`(B, I)`, output and state ``(h,)`` :math:`(B, H)`.

    Attributes:
        weight_ih: :math:`[W_f; W_h]`, shape ``(2H, I)``.
        weight_hh: :math:`[U_f; U_h]`, shape ``(2H, H)``.
        bias: :math:`[b_f; b_h]`, shape ``(2H,)``, or ``None``.

    All weights start from :math:`\mathcal{U}(-1/\sqrt{H}, 1/\sqrt{H})`, as in ``torch.nn.GRUCell``.

    Example::

        >>> cell = MGUCell(8, 16)
        >>> h, state = cell.step(torch.randn(4, 8), cell.initial_state(4))
        >>> h.shape
        torch.Size([4, 16])
    """

    recurrent_weights = ("weight_hh",)  # what cell.weight_drop may zero: the U that meet h

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__(input_size, hidden_size)
        self.weight_ih = nn.Parameter(torch.empty(2 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(2 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(2 * hidden_size)) if bias else None
        for weight in self.parameters():
            nn.init.uniform_(weight, -(hidden_size**-0.5), hidden_size**-0.5)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> charseq.State:
        return (torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype),)

    def step(self, x_t: torch.Tensor, state: charseq.State) -> tuple[torch.Tensor, charseq.State]:
        (h,) = state  # (B, H)
        gate_x, cand_x = nn.functional.linear(x_t, self.weight_ih, self.bias).chunk(2, dim=1)
        u_f, u_h = self.weight_hh.chunk(2, dim=0)  # (H, H) each
        f = torch.sigmoid(gate_x + h @ u_f.T)
        h_tilde = torch.tanh(cand_x + (f * h) @ u_h.T)
        h = (1 - f) * h + f * h_tilde
        return h, (h,)


@charseq.hookimpl
def charseq_register_cells(registry):
    registry.add("mgu", MGUCell, options=MGUOptions, help="minimal gated unit (Zhou et al., 2016)")
