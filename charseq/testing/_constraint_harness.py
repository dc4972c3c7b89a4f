"""How the constraint checks run a constraint: compiled for a small vocabulary, walked at random.

A constraint needs no model to be checked. :func:`kit_contexts` makes the contexts a check
compiles it for (a ``char`` tokenizer fitted on the subject's ``alphabet`` tag, after each of its
``primes``); :func:`compile_for` compiles it, or fails saying what the constraint asked for;
:func:`walk` drives a tracker as the decoder does (mask, choose, reorder, advance), choosing at
random among the ids it leaves, and records each step; :func:`replay` feeds given ids to a fresh
tracker. The logits a step is masked with depend on the step alone, so a walk and its replays
see the same ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import Tensor

from charseq.checks import describe_char
from charseq.constraints import (
    CompiledConstraint,
    Constraint,
    ConstraintContext,
    ConstraintTracker,
    GenerationError,
)
from charseq.registry import get_registry
from charseq.testing._base import CheckError, Subject, describe, require

__all__ = [
    "BATCH",
    "SEEDS",
    "STEPS",
    "Step",
    "allowed_by",
    "compile_for",
    "kit_contexts",
    "logits_at",
    "named",
    "replay",
    "start",
    "text_of",
    "walk",
]

BATCH = 3
"""The rows of a walk."""

STEPS = 30
"""The steps of a walk."""

SEEDS = (0, 1, 2)
"""The seeds of the walks a check takes, for each prime."""

CPU = torch.device("cpu")

NEEDS_FIX = (
    "a constraint that needs other characters or another prime says so: give the object its "
    "factory returns a method __charseq_tags__(self) returning {'alphabet': 'the characters "
    "its vocabulary needs', 'primes': ('a prime',)}; one that needs options other than its "
    "defaults is checked through a factory with them bound (functools.partial(factory, "
    "option=value)), as the test ids then show."
)

MASK_FIX = (
    "return the logits (B, V) with the ids the constraint forbids set to -inf, e.g. "
    "logits.masked_fill(~allowed, float('-inf')), one row per sequence; after reorder(index) "
    "the batch has len(index) rows."
)

EMPTY_FIX = (
    "leave at least one id finite in every row at every step: when the rule cannot be met "
    "from there, or once it is met, allow any id (TextConstraint.allowed_next returns None). "
    "The decoder keeps advancing (and masking) sequences that have finished, with the rest "
    "of the batch."
)


def kit_contexts(
    subject: Subject, constraint: Constraint, alphabet: Any = None, primes: Any = None
) -> list[ConstraintContext]:
    """One context for each prime: a ``char`` tokenizer fitted on the alphabet, the prime, and
    ``constraint`` as the request's only constraint. ``alphabet`` and ``primes`` default to
    the subject's tags of those names."""
    alphabet = subject.tags["alphabet"] if alphabet is None else alphabet
    primes = subject.tags["primes"] if primes is None else primes
    require(
        isinstance(alphabet, str) and bool(alphabet),
        f"its alphabet tag is {alphabet!r}; expected the characters of a vocabulary",
        "return a non-empty str as 'alphabet' from __charseq_tags__.",
    )
    primes = (primes,) if isinstance(primes, str) else tuple(primes)
    require(
        bool(primes) and all(isinstance(prime, str) for prime in primes),
        f"its primes tag is {primes!r}; expected a tuple of strings",
        "return a tuple of strings as 'primes' from __charseq_tags__ ('' for no prime).",
    )
    tokenizer = get_registry().get("tokenizer", "char").factory().fit(alphabet)
    return [ConstraintContext(tokenizer, prime, (constraint,)) for prime in primes]


def compile_for(constraint: Constraint, context: ConstraintContext) -> CompiledConstraint:
    """``constraint.compile(context)``, held to return a :class:`CompiledConstraint`."""
    vocabulary = text_of(context, range(context.vocab_size))
    try:
        compiled = constraint.compile(context)
    except GenerationError as error:
        raise CheckError(
            f"compile refused the kit's request (a char vocabulary of {vocabulary!r}, the prime "
            f"{context.prime!r}): {error}",
            NEEDS_FIX,
        ) from None
    require(
        isinstance(compiled, CompiledConstraint),
        f"compile returned {type(compiled).__name__}, not a charseq.constraints.CompiledConstraint",
        "return a CompiledConstraint whose start(batch_size, device) makes a "
        "ConstraintTracker; or subclass TextConstraint, which does both.",
    )
    return compiled


def start(compiled: CompiledConstraint, batch: int) -> ConstraintTracker:
    """``compiled.start(batch, cpu)``, held to return a :class:`ConstraintTracker`."""
    tracker = compiled.start(batch, CPU)
    require(
        isinstance(tracker, ConstraintTracker),
        f"start({batch}, device) returned {type(tracker).__name__}, not a "
        "charseq.constraints.ConstraintTracker",
        "return a ConstraintTracker (mask, advance, reorder) holding one row per sequence.",
    )
    return tracker


def text_of(context: ConstraintContext, ids: Sequence[int] | range) -> str:
    """The text of ``ids`` in the context's vocabulary."""
    return context.tokenizer.decode(list(ids))


def named(context: ConstraintContext, ids: Tensor) -> str:
    """The characters of the ids where the bool row ``ids`` ``(V,)`` is true, for a message."""
    chosen = ids.nonzero().flatten().tolist()
    if not chosen:
        return "nothing"
    shown = [describe_char(text_of(context, [i])) for i in chosen[:8]]
    more = f" and {len(chosen) - 8} more" if len(chosen) > 8 else ""
    return ", ".join(shown) + more


def logits_at(step: int, batch: int, vocab_size: int) -> Tensor:
    """The logits ``(B, V)`` step ``step`` is masked with: random, the same in every row, every
    walk and every replay."""
    generator = torch.Generator().manual_seed(1000 + step)
    return torch.randn(vocab_size, generator=generator).expand(batch, vocab_size).clone()


def allowed_by(tracker: ConstraintTracker, logits: Tensor, where: str) -> Tensor:
    """Which ids ``tracker.mask`` leaves finite, ``(B, V)`` bool."""
    try:
        masked = tracker.mask(logits)
    except GenerationError as error:
        raise CheckError(f"{where}, mask raised: {error}", EMPTY_FIX) from None
    require(
        isinstance(masked, Tensor) and masked.shape == logits.shape,
        f"{where}, mask returned {describe(masked)} for logits {describe(logits)}",
        MASK_FIX,
    )
    return torch.isfinite(masked)


@attrs.frozen
class Step:
    """One step of a walk: each row's ids before it, and the ids the tracker allowed.

    Attributes:
        number: the step, from 0.
        histories: each row's ids so far (its generated text, as ids).
        allowed: ``(B, V)`` bool, the ids whose masked logit is finite.
    """

    number: int
    histories: tuple[tuple[int, ...], ...]
    allowed: Tensor


def walk(
    compiled: CompiledConstraint,
    context: ConstraintContext,
    *,
    seed: int,
    batch: int = BATCH,
    steps: int = STEPS,
    reorders: Mapping[int, Sequence[int]] | None = None,
) -> Iterator[tuple[Step, ConstraintTracker]]:
    """Drive a new tracker as a decoder does, yielding each step before its ids are fed.

    At each step: mask, fail if a row has no finite logit, yield; then, if ``reorders`` has the
    step, ``reorder(index)`` (the rows follow, as in beam search); choose for each row a random
    id among those its source row allowed, and ``advance``.
    """
    generator = torch.Generator().manual_seed(seed)
    tracker = start(compiled, batch)
    histories: list[tuple[int, ...]] = [() for _ in range(batch)]
    for number in range(steps):
        rows = len(histories)
        where = f"at step {number} of a walk after the prime {context.prime!r}"
        allowed = allowed_by(tracker, logits_at(number, rows, context.vocab_size), where)
        for row, ids in enumerate(histories):
            require(
                bool(allowed[row].any()),
                f"mask left no finite logit in row {row} of {rows} after the text "
                f"{text_of(context, ids)!r} (the prime {context.prime!r}, step {number} of a "
                "walk choosing at random among the ids it allowed): no sampler can choose "
                "the next id there",
                EMPTY_FIX,
            )
        yield Step(number, tuple(histories), allowed), tracker
        if reorders and number in reorders:
            index = torch.tensor(reorders[number], dtype=torch.long)
            tracker.reorder(index)
            histories = [histories[i] for i in index.tolist()]
            allowed = allowed[index]
        chosen = torch.multinomial(allowed.float(), 1, generator=generator).squeeze(1)  # (B,)
        tracker.advance(chosen)
        histories = [h + (i,) for h, i in zip(histories, chosen.tolist(), strict=True)]


def replay(
    compiled: CompiledConstraint, context: ConstraintContext, histories: Sequence[Sequence[int]]
) -> list[Tensor]:
    """Feed ``histories`` (rows of equal length ``n``) to a new tracker; the ids it allowed
    before each id and after the last: ``n + 1`` bool tensors ``(B, V)``."""
    tracker = start(compiled, len(histories))
    ids = torch.tensor([list(h) for h in histories], dtype=torch.long).view(len(histories), -1)
    masks = []
    for number in range(ids.shape[1] + 1):
        where = f"at step {number} of a replay after the prime {context.prime!r}"
        masks.append(
            allowed_by(tracker, logits_at(number, len(histories), context.vocab_size), where)
        )
        if number < ids.shape[1]:
            tracker.advance(ids[:, number])
    return masks
