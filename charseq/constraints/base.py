"""The constraint plugin kind: what a constraint is, and what it sees when it is checked.

A constraint is a rule that generated text must follow. It acts in three stages:

1. :meth:`Constraint.compile` checks it against the tokenizer, the prime and the other
   constraints of the request, before any generation (a bad request raises
   :class:`GenerationError` with a specific message), and turns it into ids: a
   :class:`CompiledConstraint`.
2. :meth:`CompiledConstraint.start` makes a :class:`ConstraintTracker` for one generation of
   ``B`` sequences: it masks the next id's logits ``(B, V)``, records the ids chosen, follows
   beam search's reorders, and may end sequences (``finished``).
3. :meth:`CompiledConstraint.end` says where a generated text ends (stop strings, a filled verse
   form), so that the text a caller gets is cut there.

Most third-party constraints need none of the tensors: :class:`~charseq.constraints.TextConstraint`
asks for the characters allowed next, given the text so far.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import attrs
import torch
from torch import Tensor

from charseq.checks import describe_char
from charseq.errors import CharseqError
from charseq.interfaces import Tokenizer


class GenerationError(CharseqError, ValueError):
    """A generation request is invalid (raised before any generation starts), or a sampler
    broke its contract while generating (chose ids that are no ids, or that the constraints
    forbid)."""


class Constraint(abc.ABC):
    """A rule the generated text must follow, applied to the logits of every step.

    The decoder applies every active constraint before any sampler reads the logits, so a
    constraint works with every sampler, beam search included. Register one with the
    ``charseq_register_constraints`` hook; ``factory(**options)`` returns a :class:`Constraint`.

    Attributes:
        label: how error messages name the constraint ("the allowed set").
    """

    label: ClassVar[str] = "a constraint"

    def permits(self, char: str) -> bool:
        """Whether this constraint ever lets ``char`` be generated (other constraints ask, to
        refuse a request that could never be met; e.g. an acrostic head outside the allowed
        set). The default permits every character."""
        return True

    @abc.abstractmethod
    def compile(self, context: ConstraintContext) -> CompiledConstraint:
        """Check the constraint for this request and turn it into ids.

        Raises:
            GenerationError: the request can never meet the constraint; say why, and how to
                change it.
        """


class CompiledConstraint(abc.ABC):
    """A constraint checked against one tokenizer and prime."""

    @abc.abstractmethod
    def start(self, batch_size: int, device: torch.device) -> ConstraintTracker:
        """The per-sequence state of a new generation of ``batch_size`` sequences."""

    def end(self, text: str) -> int | None:
        """Where the generated ``text`` ends (the length of the part that is kept), or
        ``None`` if this constraint does not end it. The default never ends a text."""
        return None

    @property
    def longest(self) -> int | None:
        """The most ids a text can have before this constraint ends it (a form's length), or
        ``None``; generation takes no more steps. The default sets no bound."""
        return None


class ConstraintTracker(abc.ABC):
    """One generation's progress through a constraint, one row per sequence.

    Attributes:
        finished: ``(B,)`` bool, the sequences this constraint has ended; ``None`` if it never
            ends one. A token-by-token sampler stops once every sequence has finished.
    """

    finished: Tensor | None = None

    @abc.abstractmethod
    def mask(self, logits: Tensor) -> Tensor:
        """``logits`` ``(B, V)`` with the ids this constraint forbids next set to ``-inf``
        (a new tensor; never every id of a row)."""

    @abc.abstractmethod
    def advance(self, ids: Tensor) -> None:
        """Record the ids ``(B,)`` just chosen (and fed to the model)."""

    @abc.abstractmethod
    def reorder(self, index: Tensor) -> None:
        """Keep rows ``index`` ``(B',)``, in that order (beam search; repeats allowed)."""

    def allows(self, ids: Tensor, vocab_size: int) -> Tensor:
        """Which of the ids ``(B,)`` chosen now :meth:`mask` allows, ``(B,)`` bool. The
        default masks a row of zeros; built-ins answer with a gather."""
        zeros = torch.zeros(ids.shape[0], vocab_size, device=ids.device)
        finite = torch.isfinite(self.mask(zeros))  # (B, V)
        return finite.gather(1, ids.clamp(0, vocab_size - 1).unsqueeze(1)).squeeze(1)


@attrs.frozen
class ConstraintContext:
    """What :meth:`Constraint.compile` checks a constraint against.

    Attributes:
        tokenizer: the model's tokenizer (fitted).
        prime: the text generation continues.
        constraints: every constraint of the request, this one included.
    """

    tokenizer: Tokenizer
    prime: str = ""
    constraints: tuple[Constraint, ...] = ()

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def ids(self, text: str) -> list[int] | None:
        """The ids of ``text``, or ``None`` if the tokenizer cannot encode it exactly (a
        character outside the vocabulary, dropped or replaced by its unknown policy)."""
        try:
            ids = self.tokenizer.encode(text)
        except CharseqError:
            return None
        if not ids or self.tokenizer.decode(ids) != text:
            return None
        return ids

    def one_id(self, char: str) -> int | None:
        """The id of ``char`` if the tokenizer writes it as exactly one id, else ``None``."""
        ids = self.ids(char)
        return ids[0] if ids is not None and len(ids) == 1 else None

    def refusing(self, char: str, asking: Constraint) -> Constraint | None:
        """The first constraint of the request, other than ``asking``, that never permits
        ``char`` (see :meth:`Constraint.permits`), or ``None``."""
        for other in self.constraints:
            if other is not asking and not other.permits(char):
                return other
        return None

    def single_ids(self, chars: str, what: str) -> list[int]:
        """The one id of each character of ``chars``, or an error naming those the vocabulary
        lacks (``what`` says whose characters they are: "the form 'wujue'")."""
        ids: list[int] = []
        missing: list[str] = []
        for char in dict.fromkeys(chars):
            found = self.one_id(char)
            if found is None:
                missing.append(describe_char(char))
            else:
                ids.append(found)
        if missing:
            raise GenerationError(
                f"{what} needs {', '.join(missing)}, which the vocabulary cannot write as one "
                "id: the model was not trained on text that has "
                f"{'it' if len(missing) == 1 else 'them'}"
            )
        return ids
