"""The small real components the checks run plugins against.

:class:`ElmanCell` is the reference cell; :func:`tiny_model` puts it in a
:class:`~charseq.model.CharModel` for the sampler checks, and :func:`fixed_logits_model` makes
that model's next-token logits whatever a check needs (so the support of top-k, top-p and min-p
is known). All are deterministic: the same arguments give the same weights. The constraint
checks need no model: they compile a constraint for a ``char`` vocabulary of
:data:`CONSTRAINT_ALPHABET`, after each of :data:`CONSTRAINT_PRIMES`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from charseq.interfaces import Cell, State
from charseq.model import CharModel

__all__ = [
    "CONSTRAINT_ALPHABET",
    "CONSTRAINT_PRIMES",
    "PRIME",
    "VOCAB_SIZE",
    "ElmanCell",
    "fixed_logits_model",
    "tiny_model",
]

VOCAB_SIZE = 11
"""The vocabulary size of :func:`tiny_model`."""

PRIME = torch.tensor([1, 4, 2, 7])
"""The prime the sampler checks generate after."""

CONSTRAINT_ALPHABET = "\n .,:abcdefghijklmnopqrstuvwxyz春夏秋冬，。"
"""The characters of the vocabulary the constraint checks compile a constraint for: lines,
words and sentences in lower-case letters, and a few Chinese characters with the clause ends of
Chinese verse (so that the verse forms and clause acrostics fit it too)."""

CONSTRAINT_PRIMES = ("", "the sea")
"""The primes the constraint checks compile a constraint after: none (generation starts a line)
and one that ends inside a line."""


class ElmanCell(Cell):
    r"""The smallest cell, :math:`h_t = \tanh(W_{ih} x_t + b + W_{hh} h_{t-1})`; step only.

    A reference for tests (the sampler checks run their model on it). Init U(-1/sqrt(H), 1/sqrt(H)).

    Args:
        input_size: The number of features in the input :math:`x_t`.
        hidden_size: The number of features in the output :math:`h_t`.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(hidden_size))
        bound = hidden_size**-0.5
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def initial_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> State:
        return (torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype),)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state  # (B, H)
        h = torch.tanh(nn.functional.linear(x_t, self.weight_ih, self.bias) + h @ self.weight_hh.T)
        return h, (h,)


def tiny_model(vocab_size: int = VOCAB_SIZE, seed: int = 0, spread: float = 4.0) -> CharModel:
    """A small random :class:`CharModel` (embedding 4, one :class:`ElmanCell` of 8), in eval mode.

    ``spread`` scales the head so the logits of different ids are well apart (arg-max ties and
    near-ties would make "equals greedy" checks depend on rounding).
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CharModel(vocab_size, 4, [ElmanCell(4, 8)])
    with torch.no_grad():
        model.head.weight.mul_(spread)
        model.head.bias.mul_(spread)
    return model.eval()


def fixed_logits_model(logits: Sequence[float] | Tensor) -> CharModel:
    """A :class:`CharModel` whose next-token logits are ``logits`` after any prime and any id."""
    logits = torch.as_tensor(logits, dtype=torch.float32)
    model = tiny_model(len(logits))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(logits)
    return model
