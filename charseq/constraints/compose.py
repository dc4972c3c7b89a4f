"""A request's constraints together: built from the keywords and plugin names a caller gives,
compiled in one pass, applied by the decoder as one.

The decoder sees one :class:`ConstraintState`: it masks the logits with every constraint in
turn (so their rules intersect), records each step's ids in all of them, reorders all of them
with beam search, and calls a sequence finished once any constraint has ended it. A generated
text is cut where the first constraint ends it (:meth:`CompiledConstraints.cut`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import Tensor

from charseq.constraints.base import (
    CompiledConstraint,
    Constraint,
    ConstraintContext,
    ConstraintTracker,
    GenerationError,
)
from charseq.constraints.builtin import Acrostic, Allowed, Stop, as_stops
from charseq.constraints.forms import Form, template_of
from charseq.interfaces import Tokenizer
from charseq.options import build_options
from charseq.registry import Registry

ConstraintChoice = Constraint | str | Mapping[str, Any]
"""A constraint as a caller names it: a registered name, a table with a name and options, or a
:class:`Constraint`."""


@attrs.frozen
class Constraints:
    """What generated text must satisfy (all optional): the keywords of
    :meth:`~charseq.Pipeline.generate`, and any constraint plugins.

    Attributes:
        stop: stop strings; a sequence ends at (and includes) the first one it produces.
        allowed: the characters that may be generated, or ``None`` for all.
        acrostic: the first characters of successive lines (or clauses), or ``None``.
        acrostic_after: the characters after which the next head is due; ``None``: a newline,
            or with a ``form`` its fixed characters (the heads open its clauses).
        form: a verse form's name or a template (:mod:`charseq.constraints.forms`).
        extra: more constraints (built from plugins, or given as objects).
    """

    stop: tuple[str, ...] = attrs.field(default=(), converter=as_stops)
    allowed: str | None = None
    acrostic: str | None = None
    acrostic_after: str | None = None
    form: str | None = None
    extra: tuple[Constraint, ...] = attrs.field(default=(), converter=tuple)

    @property
    def active(self) -> bool:
        return bool(self.parts())

    def parts(self) -> tuple[Constraint, ...]:
        """The constraints, in the order they are checked (and their errors come)."""
        parts: list[Constraint] = []
        if self.allowed is not None:
            parts.append(Allowed(self.allowed))
        if self.stop:
            parts.append(Stop(self.stop))
        if self.form is not None:
            template_of(self.form)  # an unknown name is refused here
            parts.append(Form(self.form))
        if self.acrostic is not None:
            parts.append(Acrostic(self.acrostic, self.acrostic_after))
        elif self.acrostic_after is not None:
            raise GenerationError(
                f"acrostic_after={self.acrostic_after!r} needs acrostic=... (the heads to place)",
                argument=("acrostic_after", "acrostic"),
            )
        parts.extend(self.extra)
        return tuple(parts)

    def compile(self, tokenizer: Tokenizer, prime: str = "") -> CompiledConstraints:
        """Check every constraint against ``tokenizer`` and ``prime`` and turn them into ids.

        Raises:
            GenerationError: what a constraint can never meet (each says what and why).
        """
        parts = self.parts()
        context = ConstraintContext(tokenizer, prime, parts)
        compiled = tuple(part.compile(context) for part in parts)
        return CompiledConstraints(compiled, tokenizer.vocab_size, self.stop)


@attrs.frozen
class CompiledConstraints:
    """A request's constraints as ids, ready for a :class:`~charseq.generate.Decoder`.

    Attributes:
        parts: each compiled constraint.
        vocab_size: the size of the vocabulary they were compiled for.
        stop: the stop strings among them (a stream holds back what could begin one).
    """

    parts: tuple[CompiledConstraint, ...]
    vocab_size: int
    stop: tuple[str, ...] = ()

    def state(self, batch_size: int, device: torch.device) -> ConstraintState:
        """The per-sequence state at the start of generation."""
        trackers = [part.start(batch_size, device) for part in self.parts]
        return ConstraintState(trackers, self.vocab_size, batch_size, device)

    def end(self, text: str) -> int | None:
        """Where the first constraint ends the generated ``text``, or ``None``."""
        ends = [end for part in self.parts if (end := part.end(text)) is not None]
        return min(ends, default=None)

    @property
    def longest(self) -> int | None:
        """The most ids a text can have before a constraint ends it, or ``None``."""
        return min((n for part in self.parts if (n := part.longest) is not None), default=None)

    def cut(self, text: str) -> str:
        """The generated ``text`` cut where the constraints end it."""
        end = self.end(text)
        return text if end is None else text[:end]


class ConstraintState:
    """Every constraint's progress in one generation, applied as one; kept by the decoder,
    reordered with it."""

    def __init__(
        self,
        trackers: Sequence[ConstraintTracker],
        vocab_size: int,
        batch_size: int,
        device: torch.device,
    ) -> None:
        self.trackers = list(trackers)
        self.vocab_size = vocab_size
        self.device = device
        self._batch = batch_size

    @property
    def finished(self) -> Tensor:
        """``(B,)`` bool: the sequences a constraint has ended."""
        done = torch.zeros(self._batch, dtype=torch.bool, device=self.device)
        for tracker in self.trackers:
            if tracker.finished is not None:
                done = done | tracker.finished
        return done

    def mask(self, logits: Tensor) -> Tensor:
        """``logits`` ``(B, V)`` with every id a constraint forbids set to ``-inf``."""
        for tracker in self.trackers:
            logits = tracker.mask(logits)
        return logits

    def allows(self, ids: Tensor) -> Tensor:
        """Which of the ids ``(B,)`` chosen now every constraint allows, ``(B,)`` bool."""
        ids = ids.view(-1).to(self.device)  # (B,)
        allowed = torch.ones_like(ids, dtype=torch.bool)
        for tracker in self.trackers:
            allowed = allowed & tracker.allows(ids, self.vocab_size)
        return allowed

    def advance(self, ids: Tensor) -> None:
        """Record the ids ``(B,)`` just fed to the model."""
        ids = ids.view(-1).to(self.device)  # (B,)
        for tracker in self.trackers:
            tracker.advance(ids)

    def reorder(self, index: Tensor) -> None:
        for tracker in self.trackers:
            tracker.reorder(index)
        self._batch = index.numel()


def build_constraint(choice: ConstraintChoice, registry: Registry, where: str) -> Constraint:
    """The constraint a caller names: a :class:`Constraint` as it is, or one built by its
    registered factory from a name or a table (``{"name": "form", "template": "wujue"}``);
    ``where`` names it in errors (``"constraints[0]"``)."""
    if isinstance(choice, Constraint):
        return choice
    if isinstance(choice, str):
        table: dict[str, Any] = {"name": choice}
    elif isinstance(choice, Mapping):
        table = dict(choice)
    else:
        raise GenerationError(
            f"{where} must be a constraint's name, a table with a name and options, or a "
            f"Constraint, got {type(choice).__name__} {choice!r}"
        )
    name = table.pop("name", None)
    if not isinstance(name, str):
        raise GenerationError(f"{where} needs a name (the registered constraint), got {name!r}")
    component = registry.get("constraint", name)
    options = build_options(component.options, table, where)
    built = component.factory(**attrs.asdict(options, recurse=False))
    if not isinstance(built, Constraint):
        raise GenerationError(
            f"the constraint {name!r} ({component.owner}) built a {type(built).__name__}, not a "
            "charseq.constraints.Constraint"
        )
    return built
