r"""A Mogrifier LSTM cell for charseq (Melis, Kočiský & Blunsom, ICLR 2020, arXiv:1909.01792).

The whole plugin: an options class, a cell that writes ``initial_state`` and ``step``, and the
hook that registers it. charseq owns the loop over time, stacking, dropout and detaching.
"""

import attrs
import torch
from torch import Tensor, nn

import charseq


@attrs.frozen(kw_only=True)
class MogrifierOptions:
    """Options of the ``mogrifier`` cell (the layout, hidden_size and num_layers, is charseq's)."""

    rounds: int = charseq.option(
        5, min=0, help="mogrifier rounds before each LSTM step (0: a plain LSTM)"
    )
    rank: int = charseq.option(0, min=0, help="rank of each Q_i and R_i (0: full matrices)")
    bias: bool = charseq.option(True, help="add the LSTM's bias terms b_ih and b_hh")


class MogrifierLSTMCell(charseq.Cell):
    r"""A Mogrifier LSTM: the input and the state gate each other in turns, then an LSTM step.

    .. math::
        \begin{array}{ll}
        x^{i} = 2\sigma(Q^{i} h^{i-1}) \odot x^{i-2} & \text{for odd } i \in [1 \dots r] \\
        h^{i} = 2\sigma(R^{i} x^{i-1}) \odot h^{i-2} & \text{for even } i \in [1 \dots r] \\
        \end{array}

    from :math:`x^{-1} = x_t` and :math:`h^0 = h_{t-1}`; then the LSTM step runs on the last
    :math:`x^{\uparrow}` and :math:`h^{\uparrow}` (``torch.nn.LSTMCell``'s math, gates i, f, g, o):

    .. math::
        \begin{array}{ll}
        (i, f, o) = \sigma(W_{i,f,o}\, x^{\uparrow} + U_{i,f,o}\, h^{\uparrow} + b_{i,f,o}), \quad
        g = \tanh(W_g x^{\uparrow} + U_g h^{\uparrow} + b_g) \\
        c_t = f \odot c_{t-1} + i \odot g, \quad h_t = o \odot \tanh(c_t) \\
        \end{array}

    Each factor :math:`2\sigma(\cdot)` lies in (0, 2), so a round scales each feature by up to
    two, never flips it; with ``rounds=0`` the cell is an LSTM.

    Args:
        input_size: features in the input :math:`x_t` (I).
        hidden_size: features in the state and output :math:`h_t` (H).
        rounds: mogrifier rounds :math:`r`; the paper's best is 5. Default: ``5``.
        rank: ``0`` for full :math:`Q^i` (I, H) and :math:`R^i` (H, I); ``k > 0`` factors each
            as a product of (I, k) and (k, H) matrices, as in the paper. Default: ``0``.
        bias: add the LSTM's :math:`b_{ih}` and :math:`b_{hh}`. Default: ``True``.

    Inputs: x, (h, c)
        - **x** of shape :math:`(B, I)`: the input at one time step.
        - **h**, **c** of shape :math:`(B, H)`: the previous hidden and cell state.

    Outputs: h', (h', c')
        - **h'**, **c'** of shape :math:`(B, H)`: the next hidden state (also the output) and
          cell state.

    Attributes:
        weight_ih, weight_hh, bias_ih, bias_hh: the LSTM's, as in ``torch.nn.LSTMCell``:
            shapes ``(4H, I)``, ``(4H, H)``, ``(4H,)``, ``(4H,)`` (no biases with ``bias=False``).
        weight_q: :math:`Q^1, Q^3, \dots` stacked, shape ``(ceil(r/2), I, H)`` (full rank).
        weight_r: :math:`R^2, R^4, \dots` stacked, shape ``(floor(r/2), H, I)`` (full rank).
        weight_q_left, weight_q_right: with ``rank=k``, :math:`Q^i` = left @ right, shapes
            ``(ceil(r/2), I, k)`` and ``(ceil(r/2), k, H)``.
        weight_r_left, weight_r_right: likewise, ``(floor(r/2), H, k)`` and ``(floor(r/2), k, I)``.

        A stack with no matrix in it (``weight_r`` when ``r < 2``) is ``None``.

    All weights start from :math:`\mathcal{U}(-1/\sqrt{H}, 1/\sqrt{H})`, the LSTM's first and in
    torch's order: under one ``torch.manual_seed`` they equal ``torch.nn.LSTMCell(I, H)``'s.

    Example::

        >>> cell = MogrifierLSTMCell(8, 16, rounds=5, rank=4)
        >>> h, (h, c) = cell.step(torch.randn(3, 8), cell.initial_state(3))
        >>> h.shape, c.shape
        (torch.Size([3, 16]), torch.Size([3, 16]))
        >>> outputs, state = cell(torch.randn(3, 10, 8))  # (B, T, I): charseq's loop over step
        >>> outputs.shape
        torch.Size([3, 10, 16])
    """

    state_names = ("h", "c")

    def __init__(
        self, input_size: int, hidden_size: int, rounds: int = 5, rank: int = 0, bias: bool = True
    ) -> None:
        super().__init__(input_size, hidden_size)
        self.rounds, self.rank = rounds, rank
        I, H = input_size, hidden_size  # noqa: E741 (the paper's and torch's names)
        self.weight_ih = nn.Parameter(torch.empty(4 * H, I))
        self.weight_hh = nn.Parameter(torch.empty(4 * H, H))
        self.bias_ih = nn.Parameter(torch.empty(4 * H)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(4 * H)) if bias else None
        self._add_stack("q", (rounds + 1) // 2, I, H)  # Q^i (I, H) gates x by h
        self._add_stack("r", rounds // 2, H, I)  # R^i (H, I) gates h by x
        for weight in self.parameters():
            nn.init.uniform_(weight, -(H**-0.5), H**-0.5)

    def _add_stack(self, name: str, count: int, rows: int, cols: int) -> None:
        """Register ``count`` (rows, cols) matrices, whole or as (rows, k) @ (k, cols)."""
        shapes = {"": (rows, cols)}
        if self.rank:
            shapes = {"_left": (rows, self.rank), "_right": (self.rank, cols)}
        for suffix, shape in shapes.items():
            weight = nn.Parameter(torch.empty(count, *shape)) if count else None
            self.register_parameter(f"weight_{name}{suffix}", weight)

    def _times(self, name: str, j: int, v: Tensor) -> Tensor:
        """The ``j``-th matrix M of stack ``name`` applied to each row: ``v (B, cols)`` to
        ``v @ M.T (B, rows)``."""
        if not self.rank:
            return v @ getattr(self, f"weight_{name}")[j].T
        left = getattr(self, f"weight_{name}_left")[j]  # (rows, k)
        right = getattr(self, f"weight_{name}_right")[j]  # (k, cols)
        return v @ right.T @ left.T  # (B, k) first: never forms the (rows, cols) product

    def mogrify(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """The rounds: ``x (B, I)`` and ``h (B, H)`` gated in turns, x first."""
        for i in range(1, self.rounds + 1):
            if i % 2:  # odd: Q^i, the (i // 2)-th of weight_q
                x = 2 * torch.sigmoid(self._times("q", i // 2, h)) * x
            else:  # even: R^i, the (i // 2 - 1)-th of weight_r
                h = 2 * torch.sigmoid(self._times("r", i // 2 - 1, x)) * h
        return x, h

    def _gates(self, x_t: Tensor, h: Tensor) -> dict[str, Tensor]:
        """The mogrified input and state, and the LSTM's four gates computed from them."""
        x, h = self.mogrify(x_t, h)
        gates = nn.functional.linear(x, self.weight_ih, self.bias_ih)  # (B, 4H)
        gates = gates + nn.functional.linear(h, self.weight_hh, self.bias_hh)
        i, f, g, o = gates.chunk(4, dim=1)  # (B, H) each, torch's gate order
        sig = torch.sigmoid
        return {"x_mog": x, "h_mog": h, "i": sig(i), "f": sig(f), "g": torch.tanh(g), "o": sig(o)}

    def initial_state(self, batch_size: int, device=None, dtype=None) -> charseq.State:
        device = self.weight_ih.device if device is None else device
        dtype = self.weight_ih.dtype if dtype is None else dtype
        h = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return h, torch.zeros_like(h)

    def step(self, x_t: Tensor, state: charseq.State) -> tuple[Tensor, charseq.State]:
        h, c = state  # (B, H) each
        gates = self._gates(x_t, h)
        c = gates["f"] * c + gates["i"] * gates["g"]
        h = gates["o"] * torch.tanh(c)
        return h, (h, c)

    def internals(self, x_t: Tensor, state: charseq.State) -> dict[str, Tensor]:
        """For ``charseq inspect``: ``x_mog (B, I)``, ``h_mog (B, H)`` and the gates i, f, g, o."""
        return self._gates(x_t, state[0])

    def extra_repr(self) -> str:
        sizes = f"{self.input_size}, {self.hidden_size}"
        bias = "" if self.bias_ih is not None else ", bias=False"
        return f"{sizes}, rounds={self.rounds}, rank={self.rank}{bias}"


@charseq.hookimpl
def charseq_register_cells(registry):
    registry.add(
        "mogrifier",
        MogrifierLSTMCell,
        options=MogrifierOptions,
        help="Mogrifier LSTM (Melis et al., 2020)",
    )
