"""The built-in constraints ``stop``, ``allowed`` and ``acrostic``, registered through
charseq's own entry point like a third party's (the verse ``form`` is in
:mod:`charseq.constraints.forms`).

- ``allowed``: only these characters may be generated (each must be one id of the vocabulary).
- ``acrostic``: the first character of every line (or clause) is forced, in order: a head is
  due at the start (when the prime is empty or ends with one of ``after``), then after each of
  ``after`` the model produces (default: a newline; with a verse form, its clause ends, from
  the form's start). Once the heads are used up, the text is free. A forced step leaves one
  finite logit, so a sampler "chooses" it with probability one.
- ``stop``: a sequence ends at the first stop string it produces (searched in the generated text
  only, not in the prime), the stop string *included*, as Hugging Face's ``stop_strings``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
import torch
from torch import Tensor

from charseq.checks import describe_char, require_str
from charseq.constraints.base import (
    CompiledConstraint,
    Constraint,
    ConstraintContext,
    ConstraintTracker,
    GenerationError,
)
from charseq.constraints.stops import cut_at_stop
from charseq.options import option

NEWLINE = "\n"


# -- stop ---------------------------------------------------------------------------------------


def as_stops(stop: Any) -> tuple[str, ...]:
    """``stop`` as a tuple of non-empty strings (``None``: none; a str: one)."""
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, Iterable):
        raise GenerationError(
            f"stop must be a str or a list of them, got {type(stop).__name__} {stop!r}"
        )
    stops = tuple(stop)
    for s in stops:
        require_str(s, "a stop string", error=GenerationError)
        if not s:
            raise GenerationError("a stop string must not be empty")
    return stops


@attrs.frozen(kw_only=True)
class StopOptions:
    """Options of ``stop``."""

    strings: tuple[str, ...] = option((), help="end the text just after the first of these")


@attrs.frozen
class Stop(Constraint):
    """End each sequence just after the first stop string it produces."""

    label = "the stop strings"
    strings: tuple[str, ...] = attrs.field(converter=as_stops)

    def compile(self, context: ConstraintContext) -> CompiledStop:
        ids = [self._ids(context, stop) for stop in self.strings]
        return CompiledStop(self.strings, ids)

    def _ids(self, context: ConstraintContext, stop: str) -> list[int]:
        ids = context.ids(stop)
        if ids is None:
            missing = [describe_char(c) for c in dict.fromkeys(stop) if context.ids(c) is None]
            which = f": {', '.join(missing)} not in it" if missing else ""
            raise GenerationError(
                f"stop string {stop!r} can never be produced by the vocabulary{which}"
            )
        for char in dict.fromkeys(stop):
            refusing = context.refusing(char, self)
            if refusing is not None:
                outside = [describe_char(c) for c in dict.fromkeys(stop) if not refusing.permits(c)]
                raise GenerationError(
                    f"stop string {stop!r} can never be produced: {', '.join(outside)} "
                    f"not in {refusing.label}"
                )
        return ids


@attrs.frozen
class CompiledStop(CompiledConstraint):
    strings: tuple[str, ...]
    ids: list[list[int]]

    def start(self, batch_size: int, device: torch.device) -> StopTracker:
        return StopTracker(self.ids, batch_size, device)

    def end(self, text: str) -> int | None:
        return cut_at_stop(text, self.strings)


class StopTracker(ConstraintTracker):
    """``tail`` holds the last ids of each row, ``finished`` whether it has stopped."""

    def __init__(self, stop_ids: list[list[int]], batch: int, device: torch.device) -> None:
        self.stops = [torch.tensor(s, dtype=torch.long, device=device) for s in stop_ids]
        self.longest = max((len(s) for s in stop_ids), default=0)
        self.tail = torch.empty(batch, 0, dtype=torch.long, device=device)
        self.finished = torch.zeros(batch, dtype=torch.bool, device=device)

    def mask(self, logits: Tensor) -> Tensor:
        return logits

    def allows(self, ids: Tensor, vocab_size: int) -> Tensor:
        return torch.ones_like(ids, dtype=torch.bool)

    def advance(self, ids: Tensor) -> None:
        tail = torch.cat([self.tail, ids.unsqueeze(1)], dim=1)  # (B, L) + (B, 1)
        self.tail = tail[:, -self.longest :]  # the last L ids: (B, L)
        for stop in self.stops:
            n = stop.numel()
            if self.tail.shape[1] >= n:
                self.finished |= (self.tail[:, -n:] == stop).all(dim=1)

    def reorder(self, index: Tensor) -> None:
        self.tail = self.tail.index_select(0, index)
        self.finished = self.finished.index_select(0, index)


# -- allowed ------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class AllowedOptions:
    """Options of ``allowed``."""

    chars: str = option("", help="the only characters that may be generated")


@attrs.frozen
class Allowed(Constraint):
    """Only these characters may be generated."""

    label = "the allowed set"
    chars: str = attrs.field(converter=lambda c: c if isinstance(c, str) else "".join(c))

    def permits(self, char: str) -> bool:
        return char in self.chars

    def compile(self, context: ConstraintContext) -> CompiledAllowed:
        if not self.chars:
            raise GenerationError("the allowed set is empty: nothing could be generated")
        ids: list[int] = []
        bad: list[str] = []
        split: list[str] = []
        for char in dict.fromkeys(self.chars):
            found = context.ids(char)
            if found is None:
                bad.append(describe_char(char))
            elif len(found) != 1:
                split.append(describe_char(char))
            else:
                ids.append(found[0])
        if bad:
            raise GenerationError(
                f"allowed character{'s' if len(bad) > 1 else ''} outside the vocabulary: "
                + ", ".join(bad)
                + "; the model can never produce them: drop them from the allowed set"
            )
        if split:
            raise GenerationError(
                "the tokenizer splits these allowed characters into several ids, so an allowed "
                "set cannot name them: " + ", ".join(split) + "; use a 'char' tokenizer"
            )
        mask = torch.zeros(context.vocab_size, dtype=torch.bool)
        mask[ids] = True
        return CompiledAllowed(mask)


@attrs.frozen
class CompiledAllowed(CompiledConstraint):
    """The allowed ids as a ``(V,)`` bool mask."""

    ids: Tensor

    def start(self, batch_size: int, device: torch.device) -> AllowedTracker:
        return AllowedTracker(self.ids.to(device))


class AllowedTracker(ConstraintTracker):
    def __init__(self, allowed: Tensor) -> None:
        self.allowed = allowed  # (V,) bool

    def mask(self, logits: Tensor) -> Tensor:
        return logits.masked_fill(~self.allowed, float("-inf"))

    def allows(self, ids: Tensor, vocab_size: int) -> Tensor:
        inside = (ids >= 0) & (ids < vocab_size)  # an id outside is no id: not allowed
        return self.allowed[ids.clamp(0, vocab_size - 1)] & inside  # (V,) -> (B,)

    def advance(self, ids: Tensor) -> None:
        pass

    def reorder(self, index: Tensor) -> None:
        pass


# -- acrostic -----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class AcrosticOptions:
    """Options of ``acrostic``."""

    heads: str = option("", help="the first characters of successive lines (or clauses)")
    after: str | None = option(
        None, help="the characters after which a head is due (unset: newline, or a form's clauses)"
    )
    at_start: bool | None = option(
        None, help="a head is due at once (unset: if the prime is empty or ends with an after)"
    )


@attrs.frozen
class Acrostic(Constraint):
    """Force the first character of each line (or of each clause, with ``after="，。"``)."""

    label = "the acrostic"
    heads: str
    after: str | None = None
    at_start: bool | None = None

    def placed(self, context: ConstraintContext) -> Acrostic:
        """This acrostic with ``after`` and ``at_start`` decided for the request: unset, the
        heads open lines (after a newline), or with a verse form among the constraints its
        clauses, from the form's start; a head is due at once if the prime is empty or ends
        with one of ``after``."""
        after, start = self.after, self.at_start
        if after is None:
            forms = [c for c in context.constraints if getattr(c, "clause_ends", None)]
            if forms:  # the heads open the form's clauses, from its start
                after = forms[0].clause_ends  # type: ignore[attr-defined]
                start = True if start is None else start
            else:
                after = NEWLINE
        if start is None and isinstance(after, str):
            start = context.prime == "" or context.prime[-1] in after
        return attrs.evolve(self, after=after, at_start=start)

    def compile(self, context: ConstraintContext) -> CompiledAcrostic:
        placed = self.placed(context)
        pieces = placed._pieces(context)
        after = placed._after_ids(context, len(pieces))
        return CompiledAcrostic(pieces, after, bool(placed.at_start))

    @property
    def by_line(self) -> bool:
        return self.after == NEWLINE

    def _pieces(self, context: ConstraintContext) -> list[list[int]]:
        heads = self.heads
        if not isinstance(heads, str) or not heads:
            raise GenerationError(
                "the acrostic must be a non-empty string (one character per line)"
            )
        pieces: list[list[int]] = []
        unknown: list[str] = []
        outside: list[tuple[str, Constraint]] = []
        for position, char in enumerate(heads):
            if char == NEWLINE and self.by_line:
                raise GenerationError(
                    f"the acrostic has a newline at position {position}: it lists the first "
                    "character of each line, so it cannot hold line breaks"
                )
            if char in self.after:
                raise GenerationError(
                    f"the acrostic has {describe_char(char)} at position {position}, one of the "
                    f"characters after which a head is due ({self.after!r}): a head cannot be one"
                )
            ids = context.ids(char)
            if ids is None:
                unknown.append(f"{describe_char(char)} at position {position}")
                continue
            refusing = context.refusing(char, self)
            if refusing is not None:
                outside.append((f"{describe_char(char)} at position {position}", refusing))
            pieces.append(ids)
        if unknown:
            raise GenerationError(
                f"the acrostic has {len(unknown)} character{'s' if len(unknown) > 1 else ''} "
                "outside the vocabulary: " + "; ".join(unknown) + ". The model can never write "
                "them: choose characters it was trained on"
            )
        if outside:
            label = outside[0][1].label
            raise GenerationError(
                f"the acrostic has characters outside {label}: "
                + "; ".join(where for where, _ in outside)
            )
        return pieces

    def _after_ids(self, context: ConstraintContext, heads: int) -> list[int]:
        if not isinstance(self.after, str) or not self.after:
            raise GenerationError(
                "the acrostic's after must name the characters after which a head is due "
                "(a newline for lines; '，。' for the clauses of Chinese verse)"
            )
        if self.by_line:
            newline = context.one_id(NEWLINE)
            if newline is None:
                raise GenerationError(
                    "an acrostic needs the newline character as one id of the vocabulary, and "
                    "this tokenizer has none"
                )
            if heads > 1 and context.refusing(NEWLINE, self) is not None:
                raise GenerationError(
                    "an acrostic of several lines needs '\\n' in the allowed set, or no line "
                    "could end"
                )
            return [newline]
        ids = context.single_ids(self.after, f"acrostic_after {self.after!r}")
        if heads > 1 and all(context.refusing(c, self) for c in self.after):
            raise GenerationError(
                f"an acrostic of several heads needs one of {self.after!r} (the characters "
                "after which a head is due) to be generated, and the other constraints permit "
                "none of them"
            )
        return ids


@attrs.frozen
class CompiledAcrostic(CompiledConstraint):
    """The heads as ids (``pieces``: a head may be several ids), the ids after which the next
    is due, and whether the first is due at once."""

    pieces: list[list[int]]
    after: list[int]
    at_start: bool

    def start(self, batch_size: int, device: torch.device) -> AcrosticTracker:
        return AcrosticTracker(self, batch_size, device)


class AcrosticTracker(ConstraintTracker):
    """The forced ids are the heads laid end to end (``flat``); ``pointer`` is a row's next
    forced position there (``-1``: not forcing) and ``line`` its next head."""

    def __init__(self, compiled: CompiledAcrostic, batch: int, device: torch.device) -> None:
        pieces = compiled.pieces
        flat = [i for piece in pieces for i in piece]
        ends: list[int] = []
        for piece in pieces:
            ends.append((ends[-1] if ends else 0) + len(piece))
        starts = [end - len(piece) for end, piece in zip(ends, pieces, strict=True)]
        self.flat = torch.tensor(flat, dtype=torch.long, device=device)
        self.starts = torch.tensor(starts, dtype=torch.long, device=device)
        self.ends = torch.tensor(ends, dtype=torch.long, device=device)
        self.after = torch.tensor(compiled.after, dtype=torch.long, device=device)
        start = compiled.at_start
        self.pointer = torch.full((batch,), 0 if start else -1, dtype=torch.long, device=device)
        self.line = torch.full((batch,), 1 if start else 0, dtype=torch.long, device=device)

    def mask(self, logits: Tensor) -> Tensor:
        forcing = self.pointer >= 0  # (B,)
        if not bool(forcing.any()):
            return logits
        forced = self.flat[self.pointer.clamp(min=0)]  # (B,)
        keep = torch.zeros_like(logits, dtype=torch.bool)
        keep.scatter_(1, forced.unsqueeze(1), True)  # (B, V): only the forced id
        keep |= ~forcing.unsqueeze(1)  # (B,) -> (B, 1): rows not forced keep all
        return logits.masked_fill(~keep, float("-inf"))

    def allows(self, ids: Tensor, vocab_size: int) -> Tensor:
        forced = self.flat[self.pointer.clamp(min=0)]  # (B,)
        return (self.pointer < 0) | (ids == forced)

    def advance(self, ids: Tensor) -> None:
        forcing = self.pointer >= 0
        moved = torch.where(forcing, self.pointer + 1, self.pointer)
        line_end = self.ends[(self.line - 1).clamp(min=0)]
        moved = torch.where(forcing & (moved >= line_end), -1, moved)
        lines = self.starts.numel()
        due = torch.isin(ids, self.after)  # (B,)
        begin = ~forcing & due & (self.line < lines)
        next_start = self.starts[self.line.clamp(max=lines - 1)]
        self.pointer = torch.where(begin, next_start, moved)
        self.line = torch.where(begin, self.line + 1, self.line)

    def reorder(self, index: Tensor) -> None:
        self.pointer = self.pointer.index_select(0, index)
        self.line = self.line.index_select(0, index)


# -- factories (registered in charseq.constraints.plugin) ---------------------------------------


def stop(strings: tuple[str, ...] = ()) -> Stop:
    """End the text just after the first stop string it produces (included)."""
    return Stop(strings)


def allowed(chars: str = "") -> Allowed:
    """Only these characters may be generated."""
    return Allowed(chars)


def acrostic(heads: str = "", after: str | None = None, at_start: bool | None = None) -> Acrostic:
    """Force the first character of each line (or clause), in order."""
    return Acrostic(heads, after, at_start)
