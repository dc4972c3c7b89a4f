"""Generation: a :class:`Decoder` gives samplers the model's next-token logits, one step at a time.

A sampler never touches the model or its state directly. It reads :attr:`Decoder.logits`, feeds
its choices back with :meth:`Decoder.advance` and, if it searches (beam), reorders or repeats
sequences with :meth:`Decoder.reorder`. All sequences advance in one batched forward pass.
"""

from __future__ import annotations

import torch
from torch import Tensor

from charseq.interfaces import Sampler, SamplerOutput
from charseq.model import CharModel, StackState, select


class Decoder:
    """The model as a sampler sees it: B sequences, each with its next-token logits.

    Args:
        model: the model to run (put in eval mode by the caller).
        state: the recurrent state of the B sequences.
        logits: next-token logits of the B sequences, shape ``(B, V)``.
    """

    def __init__(self, model: CharModel, state: StackState, logits: Tensor) -> None:
        self.model = model
        self.state = state
        self.logits = logits  # (B, V)

    @classmethod
    def from_prime(cls, model: CharModel, prime: Tensor, batch_size: int = 1) -> Decoder:
        """Consume ``prime`` (ids, shape ``(P,)``) in one pass and repeat it ``batch_size`` times.

        With an empty prime the first logits are uniform (zeros), as char-rnn starts.
        """
        device = model.head.weight.device
        state = model.initial_state(batch_size, device=device)
        if prime.numel() == 0:
            logits = torch.zeros(batch_size, model.vocab_size, device=device)
            return cls(model, state, logits)
        ids = prime.to(device).view(1, -1).expand(batch_size, -1)  # (P,) -> (B, P)
        logits, state = model(ids, state)  # (B, P, V)
        return cls(model, state, logits[:, -1])

    @property
    def batch_size(self) -> int:
        return self.logits.shape[0]

    def advance(self, ids: Tensor) -> None:
        """Feed one id per sequence (shape ``(B,)``); updates :attr:`logits`."""
        logits, self.state = self.model(ids.view(-1, 1), self.state)  # (B, 1, V)
        self.logits = logits[:, 0]  # (B, V)

    def reorder(self, index: Tensor) -> None:
        """Keep sequences ``index`` (shape ``(B',)``), in that order; repeats are allowed."""
        self.state = select(self.state, index)
        self.logits = self.logits.index_select(0, index)


@torch.no_grad()
def generate_ids(
    model: CharModel,
    prime: Tensor,
    sampler: Sampler,
    max_new_tokens: int,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
) -> SamplerOutput:
    """Run ``sampler`` after ``prime`` for ``num_samples`` sequences in one batch."""
    was_training = model.training
    model.eval()
    try:
        decoder = Decoder.from_prime(model, prime, num_samples)
        return sampler.sample(decoder, max_new_tokens, generator)
    finally:
        model.train(was_training)
