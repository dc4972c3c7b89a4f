"""Constraints written on text: say which characters may come next, charseq does the ids.

:class:`TextConstraint` is to :class:`~charseq.constraints.Constraint` what
:class:`~charseq.TokenSampler` is to :class:`~charseq.Sampler`: the easy way in. A subclass
writes :meth:`~TextConstraint.allowed_next` (and, to end texts, :meth:`~TextConstraint.done`);
the batch, beam search's reorders and the masks are handled here. Each step calls
``allowed_next`` once per sequence, in Python, so it suits the CPU and small batches; a
constraint that must be fast on large batches writes the tensor interface itself (as the
built-in ones do).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import torch
from torch import Tensor

from charseq.checks import describe_char
from charseq.constraints.base import (
    CompiledConstraint,
    Constraint,
    ConstraintContext,
    ConstraintTracker,
    GenerationError,
)


class TextConstraint(Constraint):
    """A constraint that reads the generated text and names the characters allowed next, or
    those forbidden next (or both: a character must be allowed and not forbidden).

    Example::

        class CapitalFirst(TextConstraint):
            label = "a capital first"

            def allowed_next(self, text, prime):
                return None if text else "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

        class NoRepeat(TextConstraint):
            label = "no character twice in a row"

            def forbidden_next(self, text, prime):
                return (prime + text)[-1:]

    Characters the vocabulary lacks are ignored in what these return (the model cannot write
    them); when they leave no character of the vocabulary, the constraint is at fault, and
    generation stops with an error naming it.
    """

    def allowed_next(self, text: str, prime: str) -> str | None:
        """The characters that may come next after the generated ``text`` (``prime`` is what it
        continues), or ``None`` for any (the default)."""
        return None

    def forbidden_next(self, text: str, prime: str) -> str | None:
        """The characters that may not come next after the generated ``text``, or ``None`` for
        none (the default)."""
        return None

    def done(self, text: str, prime: str) -> bool:
        """Whether the generated ``text`` is complete (it is cut after its shortest complete
        prefix). The default never ends a text."""
        return False

    def check(self, context: ConstraintContext) -> None:
        """Raise :class:`~charseq.constraints.GenerationError` if the request can never meet
        this constraint (the default checks nothing)."""

    def compile(self, context: ConstraintContext) -> CompiledConstraint:
        self.check(context)
        chars = {}
        for i in range(context.vocab_size):
            char = context.tokenizer.decode([i])
            if len(char) == 1 and context.one_id(char) == i:
                chars[char] = i
        if not chars:
            raise GenerationError(
                f"{self.label} works on characters, and this tokenizer has none of its own ids "
                "(use a 'char' tokenizer)"
            )
        return CompiledText(self, context.tokenizer.decode, chars, context.prime)


@attrs.frozen(eq=False)
class CompiledText(CompiledConstraint):
    constraint: TextConstraint
    decode: Callable[[list[int]], str]
    ids: dict[str, int]  # character -> its id
    prime: str

    def start(self, batch_size: int, device: torch.device) -> TextTracker:
        return TextTracker(self, batch_size, device)

    def end(self, text: str) -> int | None:
        if type(self.constraint).done is TextConstraint.done:
            return None  # it never ends a text
        done = self.constraint.done
        for n in range(len(text) + 1):
            if done(text[:n], self.prime):
                return n
        return None


class TextTracker(ConstraintTracker):
    """Each row's generated text; masks built from ``allowed_next`` and ``forbidden_next``,
    cached by their answers."""

    def __init__(self, compiled: CompiledText, batch: int, device: torch.device) -> None:
        self.compiled = compiled
        self.device = device
        self.texts = [""] * batch
        self._masks: dict[tuple[str | None, str | None], Tensor] = {}

    @property
    def finished(self) -> Tensor | None:  # type: ignore[override]
        if type(self.compiled.constraint).done is TextConstraint.done:
            return None  # it never ends a text
        done, prime = self.compiled.constraint.done, self.compiled.prime
        return torch.tensor([done(t, prime) for t in self.texts], device=self.device)

    def _allowed(self, text: str, vocab_size: int) -> Tensor:
        constraint, prime = self.compiled.constraint, self.compiled.prime
        key = (constraint.allowed_next(text, prime), constraint.forbidden_next(text, prime))
        mask = self._masks.get(key)
        if mask is None:
            mask = self._masks[key] = self._build(key, text, vocab_size)
        return mask

    def _build(self, key: tuple[str | None, str | None], text: str, vocab_size: int) -> Tensor:
        allowed, forbidden = key
        ids = self.compiled.ids
        mask = torch.ones(vocab_size, dtype=torch.bool, device=self.device)
        if allowed is not None:
            mask[:] = False
            mask[[ids[c] for c in set(allowed) if c in ids]] = True
        if forbidden is not None:
            mask[[ids[c] for c in set(forbidden) if c in ids]] = False
        if not bool(mask.any()):
            said = []
            if allowed is not None:
                shown = ", ".join(describe_char(c) for c in sorted(set(allowed))[:5])
                said.append(f"allowed {shown or 'nothing'}")
            if forbidden is not None:
                said.append(f"forbade {len(set(forbidden))} characters")
            raise GenerationError(
                f"the constraint {self.compiled.constraint.label!r} leaves no character of the "
                f"vocabulary after {text[-20:]!r} (it {' and '.join(said)}): the constraint is "
                "at fault"
            )
        return mask

    def mask(self, logits: Tensor) -> Tensor:
        vocab = logits.shape[1]
        allowed = torch.stack([self._allowed(text, vocab) for text in self.texts])  # (B, V)
        return logits.masked_fill(~allowed, float("-inf"))

    def advance(self, ids: Tensor) -> None:
        decode = self.compiled.decode
        self.texts = [t + decode([i]) for t, i in zip(self.texts, ids.tolist(), strict=True)]

    def reorder(self, index: Tensor) -> None:
        self.texts = [self.texts[i] for i in index.tolist()]
