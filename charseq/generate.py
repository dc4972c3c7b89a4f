"""Generation: a :class:`Decoder` gives samplers the model's next-token logits, one step at a time.

A sampler never touches the model or its state directly. It reads :attr:`Decoder.logits`, feeds
its choices back with :meth:`Decoder.advance` and, if it searches (beam), reorders or repeats
sequences with :meth:`Decoder.reorder`. All sequences advance in one batched forward pass.

Constraints (:mod:`charseq.constraints`) live here, not in the samplers: a constrained decoder
sets the logits of the ids they forbid to ``-inf`` before any sampler reads them, so stop
strings, allowed sets and acrostics work with every sampler plugin, beam search included.
Token-by-token samplers report each choice with :meth:`Decoder.emit`, which is how
:meth:`~charseq.pipeline.Pipeline.stream` yields text as it is made.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from charseq.constraints import CompiledConstraints, ConstraintState, GenerationError
from charseq.interfaces import Sampler, SamplerOutput
from charseq.model import CharModel, StackState, evaluating, select_stack_state

STEPPED_PRIME = 8
"""The longest prime :meth:`Decoder.from_prime` feeds id by id on the CPU."""


_ID_DTYPES = (torch.long, torch.int)
"""What an embedding takes as ids."""


class Decoder:
    """The model as a sampler sees it: B sequences, each with its next-token logits.

    Args:
        model: the model to run (put in eval mode by the caller). The decoder advances through
            ``model.inference_step()``, built here: the weights must stay as they are while it
            decodes.
        state: the recurrent state of the B sequences.
        logits: next-token logits of the B sequences, shape ``(B, V)``.
        constraints: per-sequence constraint state, or ``None`` for unconstrained generation.

    Attributes:
        on_token: called by :meth:`emit` with each step's chosen ids ``(B,)``, or ``None``.
        on_advance: called with no arguments before each :meth:`advance`, or ``None``; what
            it raises ends the generation (how a stream stops a search sampler, which emits
            nothing until its end).
    """

    def __init__(
        self,
        model: CharModel,
        state: StackState,
        logits: Tensor,
        constraints: ConstraintState | None = None,
    ) -> None:
        self.model = model
        self.state = state
        self.constraints = constraints
        self.logits = logits  # (B, V)
        self.on_token: Callable[[Tensor], None] | None = None
        self.on_advance: Callable[[], None] | None = None
        self.sampler_name = "the sampler"
        self._step = model.inference_step()  # built once: the weights stay as they are
        self._strayed: Tensor | None = None  # () bool: a chosen id was forbidden (see check)
        self._checked: Tensor | None = None  # the ids emit has checked, which advance skips

    @classmethod
    def from_prime(
        cls,
        model: CharModel,
        prime: Tensor,
        batch_size: int = 1,
        constraints: CompiledConstraints | None = None,
    ) -> Decoder:
        """Consume ``prime`` (ids, shape ``(P,)``) and repeat it ``batch_size`` times.

        With an empty prime the first logits are uniform (zeros), as char-rnn starts. A prime
        runs through the model in one pass, or on the CPU, when it is at most
        ``STEPPED_PRIME`` ids, through the inference step id by id (a whole-sequence call
        costs about as much as eight steps there before it computes anything).
        """
        device = model.head.weight.device
        state = model.initial_state(batch_size, device=device)
        tracker = constraints.state(batch_size, device) if constraints is not None else None
        zeros = torch.zeros(batch_size, model.vocab_size, device=device)
        decoder = cls(model, state, zeros, tracker)
        if prime.numel() == 0:
            return decoder
        ids = prime.to(device).view(1, -1).expand(batch_size, -1)  # (P,) -> (B, P)
        if device.type == "cpu" and prime.numel() <= STEPPED_PRIME:
            for column in ids.unbind(1):  # (B,) each
                logits, state = decoder._step(column, state)
        else:
            all_logits, state = model(ids, state)  # (B, P, V)
            logits = all_logits[:, -1]
        decoder.state, decoder.logits = state, logits
        return decoder

    @property
    def logits(self) -> Tensor:
        """Next-token logits ``(B, V)``; ids the constraints forbid are ``-inf``."""
        if self.constraints is None:
            return self.raw_logits
        if self._masked is None:
            self._masked = self.constraints.mask(self.raw_logits)
        return self._masked

    @logits.setter
    def logits(self, value: Tensor) -> None:
        self._logits = value
        self._masked: Tensor | None = None
        self._order: Tensor | None = None  # rows of _logits to take, pending (see reorder)

    @property
    def raw_logits(self) -> Tensor:
        """The model's logits ``(B, V)`` before any constraint."""
        if self._order is not None:  # reordered since computed, and not yet read
            self._logits, self._order = self._logits.index_select(0, self._order), None
        return self._logits

    @property
    def batch_size(self) -> int:
        return self.raw_logits.shape[0]

    @property
    def finished(self) -> Tensor:
        """Which sequences have produced a stop string, ``(B,)`` bool (all ``False`` without)."""
        if self.constraints is None:
            return torch.zeros(self.batch_size, dtype=torch.bool, device=self.raw_logits.device)
        return self.constraints.finished

    @property
    def all_finished(self) -> bool:
        """Whether every sequence has stopped, so a token-by-token sampler may end early."""
        return self.constraints is not None and bool(self.constraints.finished.all())

    def advance(self, ids: Tensor) -> None:
        """Feed one id per sequence (shape ``(B,)``); updates :attr:`logits`."""
        if self.on_advance is not None:
            self.on_advance()
        checked = ids is self._checked  # already by emit
        if ids.dim() != 1:
            ids = ids.view(-1)  # (B, 1) -> (B,)
        if ids.dtype not in _ID_DTYPES:
            raise GenerationError(
                f"the sampler chose ids of dtype {ids.dtype}; ids are integers (torch.long)"
            )
        try:
            logits, self.state = self._step(ids, self.state)  # (B, V)
        except IndexError:  # the CPU's embedding; a GPU's fails in a device-side assert instead
            vocab = self.raw_logits.shape[-1]
            outside = sorted({i for i in ids.tolist() if not 0 <= i < vocab})
            if not outside:
                raise
            raise GenerationError(
                f"the sampler chose ids {outside[:5]} outside the vocabulary range({vocab})"
            ) from None
        if self.constraints is not None:
            if not checked:
                self._note_forbidden(ids)
            self._checked = None
            self.constraints.advance(ids)
        self.logits = logits

    def _note_forbidden(self, ids: Tensor) -> None:
        """Remember, on the device, whether any of ``ids`` ``(B,)`` had a ``-inf`` logit after
        the constraints; :meth:`check` raises (one gather a step, no copy to the host)."""
        if self.constraints is None or ids.dtype not in _ID_DTYPES:
            return  # no constraints; or no ids, which advance refuses
        strayed = ~self.constraints.allows(ids).all()
        self._strayed = strayed if self._strayed is None else self._strayed | strayed

    def check(self) -> None:
        """Raise if the sampler has chosen an id that the constraints forbid.

        Raises:
            GenerationError: naming the sampler; the decoder does not trust samplers with
                constraints.
        """
        if self._strayed is not None and bool(self._strayed):
            raise GenerationError(
                f"the sampler {self.sampler_name} chose ids whose logits the constraints "
                "(allowed=, acrostic=, form=, a plugin's) had set to -inf, so the text breaks "
                "them: the sampler is at fault. A sampler must choose among the ids with a "
                "finite logit in decoder.logits (softmax turns -inf into probability 0); "
                "charseq.testing.check_masked_ids_never_sampled catches this in the "
                "sampler's own tests"
            )

    def reorder(self, index: Tensor) -> None:
        """Keep sequences ``index`` (shape ``(B',)``), in that order; repeats are allowed."""
        self.state = select_stack_state(self.state, index)
        if self.constraints is not None:
            self.constraints.reorder(index)
        # The logits' rows are taken when they are next read (beam search reorders and then
        # advances without reading them): keep the composed order, not a reordered copy.
        pending = self._order
        self.logits = self._logits
        self._order = index if pending is None else pending.index_select(0, index)

    def emit(self, ids: Tensor) -> None:
        """Report the ids ``(B,)`` just chosen for output (token-by-token samplers call it).

        Under constraints the ids are checked here (the last id is never fed back); with
        :attr:`on_token` (streaming), before it sees them.
        """
        if self.constraints is not None:
            self._note_forbidden(ids)
            self._checked = ids
        if self.on_token is not None:
            self.check()
            self.on_token(ids)


@torch.no_grad()
def generate_ids(
    model: CharModel,
    prime: Tensor,
    sampler: Sampler,
    max_new_tokens: int,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
    *,
    constraints: CompiledConstraints | None = None,
    on_token: Callable[[Tensor], None] | None = None,
    on_advance: Callable[[], None] | None = None,
) -> SamplerOutput:
    """Run ``sampler`` after ``prime`` for ``num_samples`` sequences in one batch.

    Args:
        constraints: applied by the decoder to whatever the sampler is (see
            :mod:`charseq.constraints`); the returned ids are not cut at stop strings (the
            caller cuts the decoded text).
        on_token: called with each step's ids ``(B,)`` as a token-by-token sampler chooses them.
        on_advance: called before every step the decoder takes (see :class:`Decoder`).
    """
    with evaluating(model):
        decoder = Decoder.from_prime(model, prime, num_samples, constraints)
        decoder.on_token = on_token
        decoder.on_advance = on_advance
        decoder.sampler_name = sampler_name(sampler)
        out = sampler.sample(decoder, max_new_tokens, generator)
        decoder.check()
        return out


def sampler_name(sampler: Sampler) -> str:
    """How an error names a sampler: its class and the module it comes from."""
    kind = type(sampler)
    return f"{kind.__qualname__} (from {kind.__module__})"
