r"""The built-in cells: ``rnn`` (tanh), ``lstm`` and ``gru``.

Each cell has the parameters of its ``torch.nn`` twin, with the same names, shapes, gate order
and initialisation, so that under one ``torch.manual_seed`` ``LSTMCell(I, H)`` and
``torch.nn.LSTMCell(I, H)`` hold identical weights. :meth:`~_TorchCell.step` calls torch's
one-step kernel (``torch.lstm_cell`` ..., what ``torch.nn.LSTMCell`` runs); the math is in each
class's docstring and ``charseq.reference`` spells it out in numpy. For speed,
:meth:`~_TorchCell.forward_stack` runs a whole stack of layers in one call of torch's fused RNN
kernels (``torch.rnn_tanh``, ``torch.lstm``, ``torch.gru``: cuDNN on CUDA, oneDNN or native on
CPU); ``CellStack`` uses it, and each cell's :meth:`~_TorchCell.forward` uses it for a single
layer. The fused path agrees with the step loop (the tests check outputs and gradients).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar

import attrs
import torch
from torch import Tensor, nn

from charseq.builtins import inference
from charseq.hookspecs import hookimpl
from charseq.interfaces import Cell, State
from charseq.loop import unroll
from charseq.options import OptionError, option

if TYPE_CHECKING:
    from charseq.registry import Registrar

__all__ = [
    "GRUCell",
    "GRUOptions",
    "LSTMCell",
    "LSTMOptions",
    "RNNCell",
    "RNNOptions",
    "charseq_register_cells",
]


class _TorchCell(Cell):
    """What the three built-in cells share: torch's parameter layout, init, state and kernels.

    A subclass sets :attr:`num_gates` (G), :attr:`num_states` (1 for ``(h,)``, 2 for
    ``(h, c)``), :attr:`_kernel` (the fused torch function) and writes :meth:`step`, then
    records ``_kernel_step = step`` so that :meth:`forward_stack` can tell when a further
    subclass changed the step (the kernel would then compute something else, so it declines).
    """

    num_gates: ClassVar[int]
    num_states: ClassVar[int]
    recurrent_weights = ("weight_hh",)  # what cell.weight_drop masks: W_hh, as in AWD-LSTM
    _kernel: ClassVar[Callable[..., tuple[Tensor, ...]]]
    _kernel_step: ClassVar[Callable[..., tuple[Tensor, State]]]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size)
        self.bias = bias
        factory = {"device": device, "dtype": dtype}
        gates = self.num_gates * hidden_size
        # Registration order is torch's (weight_ih, weight_hh, bias_ih, bias_hh): reset_parameters
        # draws them in this order, which is what makes the weights equal torch's under one seed.
        self.weight_ih = nn.Parameter(torch.empty(gates, input_size, **factory))  # (G*H, I)
        self.weight_hh = nn.Parameter(torch.empty(gates, hidden_size, **factory))  # (G*H, H)
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gates, **factory))  # (G*H,)
            self.bias_hh = nn.Parameter(torch.empty(gates, **factory))  # (G*H,)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw every parameter from U(-1/sqrt(H), 1/sqrt(H)), in torch's order."""
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")

    def initial_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> State:
        """Zeros: ``(h,)``, or ``(h, c)`` for the LSTM, each ``(batch_size, H)``.

        Device and dtype default to the weights'.
        """
        device = self.weight_ih.device if device is None else device
        dtype = self.weight_ih.dtype if dtype is None else dtype
        zeros = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return (zeros,) + tuple(torch.zeros_like(zeros) for _ in range(self.num_states - 1))

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """The whole sequence ``x (B, T, I)`` in one fused kernel call (or the step loop)."""
        if state is None:
            state = self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
        fused = type(self).forward_stack([self], x, [state], 0.0, self.training)
        if fused is None:  # declined: the core's loop over self.step
            return unroll(self, x, state)
        outputs, (state,) = fused
        return outputs, state

    _inference: ClassVar[type[inference.CellInference]]

    def inference_step(self) -> Callable[[Tensor, State], tuple[Tensor, State]]:
        """:meth:`step` in numpy on a snapshot of the weights for one row (more rows run
        :meth:`step`), for CPU float32/float64 cells (see :mod:`charseq.builtins.inference`);
        :meth:`step` itself elsewhere, or when a subclass changed the step."""
        kind = type(self)
        if kind.step is not kind._kernel_step or not inference.supports(self):
            return self.step
        return kind._inference(self)

    def _preactivations(self, x_t: Tensor, h: Tensor) -> Tensor:
        """:math:`W_{ih} x + b_{ih} + W_{hh} h + b_{hh}`: every gate's input, ``(B, G*H)``."""
        x_part = nn.functional.linear(x_t, self.weight_ih, self.bias_ih)  # (B, G*H)
        return x_part + nn.functional.linear(h, self.weight_hh, self.bias_hh)

    def _flat_weights(self, biases: bool = False) -> list[Tensor | None]:
        """This layer's part of the kernel's weight list: ``[w_ih, w_hh(, b_ih, b_hh)]``.

        With ``biases=True`` the two biases are always there (``None`` without bias), as torch's
        one-step kernels (``torch.lstm_cell`` ...) take them.
        """
        if self.bias or biases:
            return [self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh]
        return [self.weight_ih, self.weight_hh]

    @classmethod
    def forward_stack(
        cls,
        cells: Sequence[Cell],
        x: Tensor,
        state: list[State],
        dropout: float,
        training: bool,
    ) -> tuple[Tensor, list[State]] | None:
        """Run a stack of layers in one call of torch's fused kernel.

        Args:
            cells: the layers, bottom first, all of this class.
            x: input of shape ``(B, T, I)``.
            state: one state per layer, each a tuple of ``(B, H)`` tensors.
            dropout: dropout probability between layers (not after the last).
            training: whether dropout is active.

        Returns:
            ``(outputs (B, T, H), one new state per layer)``, or ``None`` when the stack cannot
            be fused (layers of other sizes, bias settings, classes, dtypes or devices, or an
            empty sequence); the caller then runs the layers one by one.
        """
        if not cls._can_fuse(cells, x, state):
            return None
        weights = [w for cell in cells for w in cell._flat_weights()]
        # One (L, B, H) tensor per state part: h, and c for the LSTM.
        hx = [torch.stack(part) for part in zip(*state, strict=True)]
        out, *parts = cls._kernel(
            x,  # (B, T, I)
            hx if cls.num_states > 1 else hx[0],  # lstm takes [h, c]; rnn and gru take h
            weights,
            cells[0].bias,  # has_biases
            len(cells),  # num_layers
            dropout,
            training,
            False,  # bidirectional
            True,  # batch_first
        )
        # out: (B, T, H); parts: one (L, B, H) tensor per state part -> L tuples of (B, H).
        new_state = list(zip(*(part.unbind(0) for part in parts), strict=True))
        return out, new_state

    @classmethod
    def _can_fuse(cls, cells: Sequence[Cell], x: Tensor, state: list[State]) -> bool:
        """Whether one kernel call computes exactly what the cells' own step loops would."""
        if not cells or len(state) != len(cells) or x.dim() != 3 or x.shape[1] == 0:
            return False  # the kernels need T >= 1
        hidden, bias = cells[0].hidden_size, getattr(cells[0], "bias", None)
        input_sizes = [x.shape[-1]] + [hidden] * (len(cells) - 1)
        for cell, input_size, layer_state in zip(cells, input_sizes, state, strict=True):
            kind = type(cell)
            if not issubclass(kind, cls) or kind.step is not kind._kernel_step:
                return False  # another kind of cell, or a subclass that changed the step
            if (cell.input_size, cell.hidden_size, cell.bias) != (input_size, hidden, bias):
                return False  # torch's kernels stack layers of one size and one bias setting
            if len(layer_state) != cls.num_states:
                return False
        tensors = [w for cell in cells for w in cell._flat_weights()]
        tensors += [s for layer in state for s in layer]
        return all(t.dtype == x.dtype and t.device == x.device for t in tensors)


class RNNCell(_TorchCell):
    r"""An Elman RNN cell with tanh non-linearity.

    .. math::

        h' = \tanh(W_{ih} x + b_{ih} + W_{hh} h + b_{hh})

    Args:
        input_size: The number of expected features in the input `x`
        hidden_size: The number of features in the hidden state `h`
        bias: If ``False``, then the layer does not use bias weights `b_ih` and `b_hh`.
            Default: ``True``
        device, dtype: where and how to allocate the parameters.

    Inputs: x, (h,)
        - **x** of shape `(batch, input_size)`: tensor containing input features
        - **h** of shape `(batch, hidden_size)`: tensor containing the previous hidden state

    Outputs: h', (h',)
        - **h'** of shape `(batch, hidden_size)`: the next hidden state, also the output

    Shape:
        - step: :math:`(B, I)` to :math:`(B, H)`; forward: :math:`(B, T, I)` to :math:`(B, T, H)`.

    Attributes:
        weight_ih: the learnable input-hidden weights, of shape `(hidden_size, input_size)`
        weight_hh: the learnable hidden-hidden weights, of shape `(hidden_size, hidden_size)`
        bias_ih: the learnable input-hidden bias, of shape `(hidden_size)`
        bias_hh: the learnable hidden-hidden bias, of shape `(hidden_size)`

    .. note::
        All the weights and biases are initialized from :math:`\mathcal{U}(-\sqrt{k}, \sqrt{k})`
        where :math:`k = \frac{1}{\text{hidden\_size}}`, in torch's order.

    Examples::

        >>> cell = RNNCell(10, 20)
        >>> x = torch.randn(3, 6, 10)  # (batch, time, input_size)
        >>> state = cell.initial_state(3)
        >>> h, state = cell.step(x[:, 0], state)  # one step
        >>> outputs, state = cell(x)  # the whole sequence, fused
        >>> outputs.shape
        torch.Size([3, 6, 20])
    """

    num_gates = 1
    num_states = 1
    state_names = ("h",)
    _kernel = staticmethod(torch.rnn_tanh)
    _inference = inference.RNNInference

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state  # (B, H)
        h = torch.rnn_tanh_cell(x_t, h, *self._flat_weights(biases=True))  # (B, H)
        return h, (h,)

    def internals(self, x_t: Tensor, state: State) -> dict[str, Tensor]:
        r"""The pre-activation ``a``, :math:`h' = \tanh(a)`, ``(B, H)``."""
        return {"a": self._preactivations(x_t, state[0])}

    _kernel_step = step


class LSTMCell(_TorchCell):
    r"""A long short-term memory (LSTM) cell.

    .. math::

        \begin{array}{ll}
        i = \sigma(W_{ii} x + b_{ii} + W_{hi} h + b_{hi}) \\
        f = \sigma(W_{if} x + b_{if} + W_{hf} h + b_{hf}) \\
        g = \tanh(W_{ig} x + b_{ig} + W_{hg} h + b_{hg}) \\
        o = \sigma(W_{io} x + b_{io} + W_{ho} h + b_{ho}) \\
        c' = f \odot c + i \odot g \\
        h' = o \odot \tanh(c') \\
        \end{array}

    where :math:`\sigma` is the sigmoid function, and :math:`\odot` is the Hadamard product.

    Args:
        input_size: The number of expected features in the input `x`
        hidden_size: The number of features in the hidden state `h`
        bias: If ``False``, then the layer does not use bias weights `b_ih` and `b_hh`.
            Default: ``True``
        forget_bias: added to the forget-gate part of `b_ih` after the uniform init (and by every
            :meth:`reset_parameters`); 1.0 is the usual choice (Jozefowicz et al., 2015) to let
            gradients flow early in training. Needs ``bias=True``. Default: ``0.0``, torch's init
        device, dtype: where and how to allocate the parameters.

    Inputs: x, (h, c)
        - **x** of shape `(batch, input_size)`: tensor containing input features
        - **h** of shape `(batch, hidden_size)`: tensor containing the previous hidden state
        - **c** of shape `(batch, hidden_size)`: tensor containing the previous cell state

    Outputs: h', (h', c')
        - **h'** of shape `(batch, hidden_size)`: the next hidden state, also the output
        - **c'** of shape `(batch, hidden_size)`: the next cell state

    Shape:
        - step: :math:`(B, I)` to :math:`(B, H)`; forward: :math:`(B, T, I)` to :math:`(B, T, H)`.

    Attributes:
        weight_ih: the learnable input-hidden weights :math:`(W_{ii}|W_{if}|W_{ig}|W_{io})`, of
            shape `(4*hidden_size, input_size)`
        weight_hh: the learnable hidden-hidden weights :math:`(W_{hi}|W_{hf}|W_{hg}|W_{ho})`, of
            shape `(4*hidden_size, hidden_size)`
        bias_ih: the learnable input-hidden bias :math:`(b_{ii}|b_{if}|b_{ig}|b_{io})`, of shape
            `(4*hidden_size)`
        bias_hh: the learnable hidden-hidden bias :math:`(b_{hi}|b_{hf}|b_{hg}|b_{ho})`, of shape
            `(4*hidden_size)`

    .. note::
        All the weights and biases are initialized from :math:`\mathcal{U}(-\sqrt{k}, \sqrt{k})`
        where :math:`k = \frac{1}{\text{hidden\_size}}`, in torch's order.

    Examples::

        >>> cell = LSTMCell(10, 20)
        >>> x = torch.randn(3, 6, 10)  # (batch, time, input_size)
        >>> h, (h, c) = cell.step(x[:, 0], cell.initial_state(3))  # one step
        >>> outputs, (h, c) = cell(x)  # the whole sequence, fused
        >>> outputs.shape, c.shape
        (torch.Size([3, 6, 20]), torch.Size([3, 20]))
    """

    num_gates = 4
    num_states = 2
    state_names = ("h", "c")
    _kernel = staticmethod(torch.lstm)
    _inference = inference.LSTMInference

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        bias: bool = True,
        forget_bias: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if forget_bias and not bias:
            raise OptionError("forget_bias", "forget_bias needs bias=True")
        self.forget_bias = forget_bias
        super().__init__(input_size, hidden_size, bias=bias, device=device, dtype=dtype)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.forget_bias:
            with torch.no_grad():
                H = self.hidden_size
                self.bias_ih[H : 2 * H] += self.forget_bias  # gate order i, f, g, o

    def extra_repr(self) -> str:
        forget = f", forget_bias={self.forget_bias}" if self.forget_bias else ""
        return super().extra_repr() + forget

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = torch.lstm_cell(x_t, state, *self._flat_weights(biases=True))  # (B, H) each
        return h, (h, c)

    def internals(self, x_t: Tensor, state: State) -> dict[str, Tensor]:
        """The gates ``i``, ``f``, ``o`` (sigmoids) and the candidate ``g`` (tanh), ``(B, H)``."""
        i, f, g, o = self._preactivations(x_t, state[0]).chunk(4, dim=1)  # (B, 4H) -> 4 (B, H)
        return {"i": i.sigmoid(), "f": f.sigmoid(), "g": g.tanh(), "o": o.sigmoid()}

    _kernel_step = step


class GRUCell(_TorchCell):
    r"""A gated recurrent unit (GRU) cell.

    .. math::

        \begin{array}{ll}
        r = \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}) \\
        z = \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz}) \\
        n = \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})) \\
        h' = (1 - z) \odot n + z \odot h
        \end{array}

    where :math:`\sigma` is the sigmoid function, and :math:`\odot` is the Hadamard product.
    As in torch (and cuDNN), :math:`r` multiplies :math:`W_{hn} h + b_{hn}`, not :math:`h` as in
    Cho et al. (2014).

    Args:
        input_size: The number of expected features in the input `x`
        hidden_size: The number of features in the hidden state `h`
        bias: If ``False``, then the layer does not use bias weights `b_ih` and `b_hh`.
            Default: ``True``
        device, dtype: where and how to allocate the parameters.

    Inputs: x, (h,)
        - **x** of shape `(batch, input_size)`: tensor containing input features
        - **h** of shape `(batch, hidden_size)`: tensor containing the previous hidden state

    Outputs: h', (h',)
        - **h'** of shape `(batch, hidden_size)`: the next hidden state, also the output

    Shape:
        - step: :math:`(B, I)` to :math:`(B, H)`; forward: :math:`(B, T, I)` to :math:`(B, T, H)`.

    Attributes:
        weight_ih: the learnable input-hidden weights :math:`(W_{ir}|W_{iz}|W_{in})`, of shape
            `(3*hidden_size, input_size)`
        weight_hh: the learnable hidden-hidden weights :math:`(W_{hr}|W_{hz}|W_{hn})`, of shape
            `(3*hidden_size, hidden_size)`
        bias_ih: the learnable input-hidden bias :math:`(b_{ir}|b_{iz}|b_{in})`, of shape
            `(3*hidden_size)`
        bias_hh: the learnable hidden-hidden bias :math:`(b_{hr}|b_{hz}|b_{hn})`, of shape
            `(3*hidden_size)`

    .. note::
        All the weights and biases are initialized from :math:`\mathcal{U}(-\sqrt{k}, \sqrt{k})`
        where :math:`k = \frac{1}{\text{hidden\_size}}`, in torch's order.

    Examples::

        >>> cell = GRUCell(10, 20)
        >>> x = torch.randn(3, 6, 10)  # (batch, time, input_size)
        >>> h, state = cell.step(x[:, 0], cell.initial_state(3))  # one step
        >>> outputs, (h,) = cell(x)  # the whole sequence, fused
        >>> outputs.shape
        torch.Size([3, 6, 20])
    """

    num_gates = 3
    num_states = 1
    state_names = ("h",)
    _kernel = staticmethod(torch.gru)
    _inference = inference.GRUInference

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state  # (B, H)
        h = torch.gru_cell(x_t, h, *self._flat_weights(biases=True))  # (B, H)
        return h, (h,)

    def internals(self, x_t: Tensor, state: State) -> dict[str, Tensor]:
        """The reset gate ``r``, the update gate ``z`` (sigmoids) and the candidate ``n``."""
        # (B, 3H) -> three (B, H) each, for the input part and the hidden part
        x_r, x_z, x_n = nn.functional.linear(x_t, self.weight_ih, self.bias_ih).chunk(3, dim=1)
        h_r, h_z, h_n = nn.functional.linear(state[0], self.weight_hh, self.bias_hh).chunk(3, 1)
        r = (x_r + h_r).sigmoid()
        return {"r": r, "z": (x_z + h_z).sigmoid(), "n": (x_n + r * h_n).tanh()}

    _kernel_step = step


# -- options and registration --------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RNNOptions:
    """Options of the ``rnn`` cell (size, depth and dropout are the cell layout's)."""

    bias: bool = option(True, help="add the bias terms b_ih and b_hh")


@attrs.frozen(kw_only=True)
class LSTMOptions:
    """Options of the ``lstm`` cell."""

    bias: bool = option(True, help="add the bias terms b_ih and b_hh")
    forget_bias: float = option(
        0.0, help="added to the forget-gate bias at init (1.0 is common; 0.0 is torch's init)"
    )

    def __attrs_post_init__(self) -> None:
        if self.forget_bias and not self.bias:
            raise OptionError("forget_bias", "needs bias = true")


@attrs.frozen(kw_only=True)
class GRUOptions:
    """Options of the ``gru`` cell."""

    bias: bool = option(True, help="add the bias terms b_ih and b_hh")


@hookimpl
def charseq_register_cells(registry: Registrar) -> None:
    """Register the built-in cells ``rnn``, ``lstm`` and ``gru``."""
    registry.add("rnn", RNNCell, options=RNNOptions, help="Elman RNN, h' = tanh(W x + U h + b)")
    registry.add(
        "lstm", LSTMCell, options=LSTMOptions, help="long short-term memory (torch's LSTM)"
    )
    registry.add("gru", GRUCell, options=GRUOptions, help="gated recurrent unit (torch's GRU)")
