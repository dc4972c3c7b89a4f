"""Constrained generation: stop strings, an allowed-character set and acrostics.

Constraints live in the :class:`~charseq.generate.Decoder`, not in the samplers, so they compose
with every sampler plugin (greedy, temperature, beam, or a third party's) without the sampler
knowing: the decoder sets the logits of disallowed ids to ``-inf`` before any sampler reads
:attr:`Decoder.logits`.

- ``allowed``: only these characters may be generated (each must be one id of the vocabulary).
- ``acrostic``: the first character of every line is forced, in order: the first line's if
  generation starts at the beginning of a line (an empty prime, or one ending in a newline),
  then, after each newline the model produces, the next character of the acrostic. Once the
  acrostic is used up, lines are free (add ``stop=["\\n"]`` ... to end there). A forced step
  leaves one finite logit, so a sampler "chooses" it with probability one.
- ``stop``: a sequence ends at the first stop string it produces (searched in the generated text
  only, not in the prime). The stop string is *included* in the output, as Hugging Face's
  ``stop_strings`` does. Sequences of a batch (``num_samples``, or beam search's beams) keep
  being advanced after they stop (the batch moves in lockstep), but their text is cut at the
  stop string when decoded; token-by-token samplers end early once every sequence has stopped.
  Beam search ranks whole sequences, so with beams the stop string cuts the best final
  sequence.

:meth:`Constraints.compile` checks everything against the tokenizer before any generation, and
raises :class:`GenerationError` with a specific message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import torch
from torch import Tensor

from charseq.checks import describe_char, require_str
from charseq.errors import CharseqError
from charseq.interfaces import Tokenizer

NEWLINE = "\n"


class GenerationError(CharseqError, ValueError):
    """A generation request is invalid (raised before any generation starts), or a sampler
    broke its contract while generating (chose ids that are no ids, or that the constraints
    forbid)."""


@attrs.frozen
class Constraints:
    """What generated text must satisfy (all optional).

    Attributes:
        stop: stop strings; a sequence ends at (and includes) the first one it produces.
        allowed: the characters that may be generated, or ``None`` for all.
        acrostic: the first characters of successive lines, or ``None``.
    """

    stop: tuple[str, ...] = attrs.field(default=(), converter=lambda s: _as_stops(s))
    allowed: str | None = None
    acrostic: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.stop) or self.allowed is not None or self.acrostic is not None

    def compile(self, tokenizer: Tokenizer, prime: str = "") -> CompiledConstraints:
        """Check the constraints against ``tokenizer`` and turn them into ids.

        Raises:
            GenerationError: an allowed or acrostic character outside the vocabulary (or that
                the tokenizer does not map to ids of its own), an acrostic character outside
                the allowed set, a stop string that the vocabulary (or the allowed set) can
                never produce, an empty stop string, or an empty allowed set or acrostic.
        """
        vocab_size = tokenizer.vocab_size
        allowed_ids: list[int] | None = None
        if self.allowed is not None:
            allowed_ids = _allowed_ids(tokenizer, self.allowed)
        stop_ids = [_stop_ids(tokenizer, s, self.allowed) for s in self.stop]
        pieces: list[list[int]] = []
        newline = -1
        if self.acrostic is not None:
            pieces = _acrostic_pieces(tokenizer, self.acrostic, self.allowed)
            newline = _newline_id(tokenizer, self.allowed, len(pieces))
        mask = None
        if allowed_ids is not None:
            mask = torch.zeros(vocab_size, dtype=torch.bool)
            mask[allowed_ids] = True
        return CompiledConstraints(
            stop=self.stop,
            stop_ids=stop_ids,
            allowed=mask,
            pieces=pieces,
            newline=newline,
            line_start=prime == "" or prime.endswith(NEWLINE),
        )


def _as_stops(stop: Any) -> tuple[str, ...]:
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


def _round_trip(tokenizer: Tokenizer, text: str) -> list[int] | None:
    """The ids of ``text``, or ``None`` if the tokenizer cannot encode it exactly."""
    try:
        ids = tokenizer.encode(text)
    except CharseqError:
        return None
    if not ids or tokenizer.decode(ids) != text:
        return None  # dropped or replaced by the tokenizer's unknown policy
    return ids


def _allowed_ids(tokenizer: Tokenizer, allowed: str) -> list[int]:
    if not isinstance(allowed, str):
        allowed = "".join(allowed)
    if not allowed:
        raise GenerationError("the allowed set is empty: nothing could be generated")
    ids: list[int] = []
    bad: list[str] = []
    split: list[str] = []
    for char in dict.fromkeys(allowed):
        found = _round_trip(tokenizer, char)
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
    return ids


def _stop_ids(tokenizer: Tokenizer, stop: str, allowed: str | None) -> list[int]:
    ids = _round_trip(tokenizer, stop)
    if ids is None:
        missing = [
            describe_char(c) for c in dict.fromkeys(stop) if _round_trip(tokenizer, c) is None
        ]
        which = f": {', '.join(missing)} not in it" if missing else ""
        raise GenerationError(
            f"stop string {stop!r} can never be produced by the vocabulary{which}"
        )
    if allowed is not None:
        outside = [describe_char(c) for c in dict.fromkeys(stop) if c not in allowed]
        if outside:
            raise GenerationError(
                f"stop string {stop!r} can never be produced: {', '.join(outside)} "
                "not in the allowed set"
            )
    return ids


def _acrostic_pieces(tokenizer: Tokenizer, acrostic: str, allowed: str | None) -> list[list[int]]:
    if not isinstance(acrostic, str) or not acrostic:
        raise GenerationError("the acrostic must be a non-empty string (one character per line)")
    pieces: list[list[int]] = []
    unknown: list[str] = []
    outside: list[str] = []
    for position, char in enumerate(acrostic):
        if char == NEWLINE:
            raise GenerationError(
                f"the acrostic has a newline at position {position}: it lists the first "
                "character of each line, so it cannot hold line breaks"
            )
        ids = _round_trip(tokenizer, char)
        if ids is None:
            unknown.append(f"{describe_char(char)} at position {position}")
            continue
        if allowed is not None and char not in allowed:
            outside.append(f"{describe_char(char)} at position {position}")
        pieces.append(ids)
    if unknown:
        raise GenerationError(
            f"the acrostic has {len(unknown)} character{'s' if len(unknown) > 1 else ''} "
            "outside the vocabulary: " + "; ".join(unknown) + ". The model can never write "
            "them: choose characters it was trained on"
        )
    if outside:
        raise GenerationError(
            "the acrostic has characters outside the allowed set: " + "; ".join(outside)
        )
    return pieces


def _newline_id(tokenizer: Tokenizer, allowed: str | None, lines: int) -> int:
    ids = _round_trip(tokenizer, NEWLINE)
    if ids is None or len(ids) != 1:
        raise GenerationError(
            "an acrostic needs the newline character as one id of the vocabulary, and this "
            "tokenizer has none"
        )
    if allowed is not None and NEWLINE not in allowed and lines > 1:
        raise GenerationError(
            "an acrostic of several lines needs '\\n' in the allowed set, or no line could end"
        )
    return ids[0]


@attrs.define
class CompiledConstraints:
    """:class:`Constraints` as ids, ready for a :class:`~charseq.generate.Decoder`."""

    stop: tuple[str, ...] = ()
    stop_ids: list[list[int]] = attrs.field(factory=list)
    allowed: Tensor | None = None  # (V,) bool
    pieces: list[list[int]] = attrs.field(factory=list)  # acrostic: forced ids of each line
    newline: int = -1
    line_start: bool = True

    def state(self, batch_size: int, device: torch.device) -> ConstraintState:
        """The per-sequence state at the start of generation."""
        return ConstraintState(self, batch_size, device)


class ConstraintState:
    """Per-sequence progress through the constraints; kept by the decoder, reordered with it.

    Acrostic: the forced ids are the acrostic's pieces laid end to end (``flat``); ``pointer``
    is a row's next forced position there (``-1``: not forcing) and ``line`` its next line.
    Stop strings: ``tail`` holds the last ids of each row, ``finished`` whether it has stopped.
    """

    def __init__(self, compiled: CompiledConstraints, batch: int, device: torch.device) -> None:
        self.compiled = compiled
        self.device = device
        self.allowed = compiled.allowed.to(device) if compiled.allowed is not None else None
        flat = [i for piece in compiled.pieces for i in piece]
        ends: list[int] = []
        for piece in compiled.pieces:
            ends.append((ends[-1] if ends else 0) + len(piece))
        self.flat = torch.tensor(flat, dtype=torch.long, device=device)
        starts = [end - len(piece) for end, piece in zip(ends, compiled.pieces, strict=True)]
        self.starts = torch.tensor(starts, dtype=torch.long, device=device)
        self.ends = torch.tensor(ends, dtype=torch.long, device=device)
        has_acrostic = bool(flat)
        start = has_acrostic and compiled.line_start
        self.pointer = torch.full((batch,), 0 if start else -1, dtype=torch.long, device=device)
        self.line = torch.full((batch,), 1 if start else 0, dtype=torch.long, device=device)
        self.stops = [torch.tensor(s, dtype=torch.long, device=device) for s in compiled.stop_ids]
        self.longest = max((len(s) for s in compiled.stop_ids), default=0)
        self.tail = torch.empty(batch, 0, dtype=torch.long, device=device)
        self.finished = torch.zeros(batch, dtype=torch.bool, device=device)

    def mask(self, logits: Tensor) -> Tensor:
        """``logits`` ``(B, V)`` with every id the constraints forbid set to ``-inf``."""
        if self.allowed is not None:
            logits = logits.masked_fill(~self.allowed, float("-inf"))
        if self.flat.numel():
            forcing = self.pointer >= 0  # (B,)
            if bool(forcing.any()):
                forced = self.flat[self.pointer.clamp(min=0)]  # (B,)
                keep = torch.zeros_like(logits, dtype=torch.bool)
                keep.scatter_(1, forced.unsqueeze(1), True)  # (B, V): only the forced id
                keep |= ~forcing.unsqueeze(1)  # (B,) -> (B, 1): rows not forced keep all
                logits = logits.masked_fill(~keep, float("-inf"))
        return logits

    def allows(self, ids: Tensor) -> Tensor:
        """Which of the ids ``(B,)`` chosen now the constraints allow (their logit in
        :meth:`mask` is finite), ``(B,)`` bool; a gather or two, no copy to the host."""
        ids = ids.view(-1).to(self.device)  # (B,)
        allowed = torch.ones_like(ids, dtype=torch.bool)
        if self.allowed is not None:
            vocab = self.allowed.numel()
            inside = (ids >= 0) & (ids < vocab)  # an id outside is no id: not allowed
            allowed = self.allowed[ids.clamp(0, vocab - 1)] & inside  # (V,) -> (B,)
        if self.flat.numel():
            forced = self.flat[self.pointer.clamp(min=0)]  # (B,)
            allowed = allowed & ((self.pointer < 0) | (ids == forced))
        return allowed

    def advance(self, ids: Tensor) -> None:
        """Record the ids ``(B,)`` just fed to the model."""
        ids = ids.view(-1).to(self.device)  # (B,)
        if self.flat.numel():
            forcing = self.pointer >= 0
            moved = torch.where(forcing, self.pointer + 1, self.pointer)
            line_end = self.ends[(self.line - 1).clamp(min=0)]
            moved = torch.where(forcing & (moved >= line_end), -1, moved)
            lines = self.starts.numel()
            begin = ~forcing & (ids == self.compiled.newline) & (self.line < lines)
            next_start = self.starts[self.line.clamp(max=lines - 1)]
            self.pointer = torch.where(begin, next_start, moved)
            self.line = torch.where(begin, self.line + 1, self.line)
        if self.longest:
            tail = torch.cat([self.tail, ids.unsqueeze(1)], dim=1)  # (B, L) + (B, 1)
            self.tail = tail[:, -self.longest :]  # the last L ids: (B, L)
            for stop in self.stops:
                n = stop.numel()
                if self.tail.shape[1] >= n:
                    self.finished |= (self.tail[:, -n:] == stop).all(dim=1)

    def reorder(self, index: Tensor) -> None:
        self.pointer = self.pointer.index_select(0, index)
        self.line = self.line.index_select(0, index)
        self.tail = self.tail.index_select(0, index)
        self.finished = self.finished.index_select(0, index)


def cut_at_stop(text: str, stops: Iterable[str], start: int = 0) -> int | None:
    """The end of the earliest-ending stop string in ``text`` (searching from ``start``), or
    ``None``. The text up to that end, stop string included, is what generation returns."""
    best: int | None = None
    for stop in stops:
        found = text.find(stop, start)
        if found >= 0 and (best is None or found + len(stop) < best):
            best = found + len(stop)
    return best


def apply_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` cut just after the first stop string it holds (unchanged if none)."""
    end = cut_at_stop(text, stops)
    return text if end is None else text[:end]


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many characters at the end of ``text`` could begin a stop string (so a stream must
    not emit them yet)."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest
