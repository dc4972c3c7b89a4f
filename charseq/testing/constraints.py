"""Conformance checks for constraints: what the decoder relies on, whatever the rule.

Each check takes the constraint to test as a registry Component, a ``"constraint:name"`` string,
or a factory ``make_constraint(**options)`` returning a :class:`charseq.constraints.Constraint`
(a :class:`~charseq.constraints.TextConstraint` subclass is one). Checks need no model: they
compile the constraint for a ``char`` vocabulary (the ``alphabet`` tag, by default
:data:`~charseq.testing.fixtures.CONSTRAINT_ALPHABET`) after each prime (the ``primes`` tag),
then walk its tracker as the decoder does, 30 steps of 3 rows, choosing at random among the ids
it leaves (several seeds), and compare what it masks with what a fresh tracker masks for the same
ids. A constraint that needs options other than its defaults is checked through a factory with
them bound::

    import functools
    from charseq.constraints.builtin import allowed
    from charseq.testing import check_component

    check_component(functools.partial(allowed, chars="abc "), kind="constraint")
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import Tensor

from charseq.checks import is_int
from charseq.constraints import CompiledConstraint, ConstraintContext, ConstraintTracker
from charseq.testing._base import CheckError, Subject, describe, register_check, require
from charseq.testing._constraint_harness import (
    BATCH,
    SEEDS,
    Step,
    compile_for,
    kit_contexts,
    logits_at,
    named,
    replay,
    text_of,
    walk,
)

__all__ = [
    "check_allows_agrees_with_mask",
    "check_constraint_api",
    "check_constraint_batch_independence",
    "check_constraint_deterministic",
    "check_constraint_follows_reorder",
    "check_end_within_text",
    "check_never_masks_every_id",
]

REORDERS = {3: (2, 0, 0), 8: (1, 1, 0, 2), 14: (3, 0, 2), 21: (0, 0, 0)}
"""How :func:`check_constraint_follows_reorder` moves the rows, at which steps: keeping some,
repeating them, growing the batch (as beam search does after its first step) and shrinking it."""


def _compiled(
    subject: Subject, alphabet: Any, primes: Any
) -> list[tuple[ConstraintContext, CompiledConstraint]]:
    """The subject built with its options and compiled for each of the kit's contexts."""
    constraint = subject.build_checked()
    contexts = kit_contexts(subject, constraint, alphabet, primes)
    return [(context, compile_for(constraint, context)) for context in contexts]


@register_check("constraint")
def check_constraint_api(subject: Subject, *, alphabet: Any = None, primes: Any = None) -> None:
    """The factory builds a :class:`~charseq.constraints.Constraint` that compiles for the kit's
    vocabulary and primes, and its tracker keeps the contract.

    ``compile(context)`` returns a ``CompiledConstraint`` whose ``start(B, device)`` returns a
    ``ConstraintTracker``, for batches of 1 and 3. Over the first steps of a walk (which keeps
    only its first row at step 2, through ``reorder``), ``mask(logits)`` returns a tensor of the
    logits' shape and dtype, leaves its argument as it was, keeps the logits of the ids it
    allows and sets the others to ``-inf``; ``finished`` is ``None`` or ``(B,)`` bool;
    ``allows`` returns ``(B,)`` bool.
    """
    constraint = subject.build_checked()
    label = getattr(constraint, "label", None)
    require(
        isinstance(label, str) and bool(label),
        f"its label is {label!r}",
        "set the class attribute label to how error messages name it ('the rhyme').",
    )
    for context in kit_contexts(subject, constraint, alphabet, primes):
        compiled = compile_for(constraint, context)
        for batch in (1, BATCH):
            steps = walk(compiled, context, seed=0, batch=batch, steps=4, reorders=_KEEP_FIRST_ROW)
            for step, tracker in steps:
                _check_tracker(tracker, context, step)


_KEEP_FIRST_ROW = {2: (0,)}
"""The API check's walk keeps its first row at step 2 (a batch of 3 becomes one row)."""


def _check_tracker(tracker: ConstraintTracker, context: ConstraintContext, step: Step) -> None:
    """``mask``, ``finished`` and ``allows`` keep the contract at this step."""
    batch, vocab = len(step.histories), context.vocab_size
    logits = logits_at(step.number, batch, vocab) + torch.arange(batch).unsqueeze(1)  # rows differ
    given = logits.clone()
    masked = tracker.mask(logits)
    where = f"at step {step.number} after the prime {context.prime!r}, mask({describe(logits)})"
    require(
        isinstance(masked, Tensor)
        and masked.shape == logits.shape
        and masked.dtype == logits.dtype,
        f"{where} returned {describe(masked, dtype=True)}",
        "return a tensor of the logits' shape and dtype.",
    )
    require(
        torch.equal(logits, given),
        f"{where} wrote into the logits it was given",
        "return a new tensor (logits.masked_fill(...)) and leave the argument alone: the "
        "decoder keeps the model's own logits (Decoder.raw_logits).",
    )
    finite = torch.isfinite(masked)
    require(
        torch.equal(masked[finite], logits[finite]) and bool((masked[~finite] < 0).all()),
        f"{where} changed logits other than by setting them to -inf",
        "set the ids the constraint forbids to -inf and leave the others as they are; a "
        "sampler turns them into probabilities.",
    )
    finished = tracker.finished
    require(
        finished is None
        or (
            isinstance(finished, Tensor)
            and finished.dtype == torch.bool
            and tuple(finished.shape) == (batch,)
        ),
        f"{where}: finished is {describe(finished, dtype=True)} for a batch of {batch}",
        f"finished is None (the constraint never ends a text) or a ({batch},) bool tensor.",
    )
    ids = finite.float().argmax(dim=1)  # (B,): an id each row allows
    allows = tracker.allows(ids, vocab)
    require(
        isinstance(allows, Tensor) and allows.dtype == torch.bool and allows.shape == ids.shape,
        f"{where}: allows(ids of shape ({batch},), {vocab}) returned "
        f"{describe(allows, dtype=True)}",
        "return one bool per row; or drop the override (the default masks a row of zeros).",
    )


@register_check("constraint")
def check_never_masks_every_id(
    subject: Subject, *, alphabet: Any = None, primes: Any = None
) -> None:
    """Every row keeps a finite logit at every step.

    Walks of 30 steps, 3 rows each, choosing at random among the ids the constraint leaves
    (three seeds after each prime): a row with every id ``-inf`` would leave a sampler nothing
    to choose, so the decoder could not go on.
    """
    for context, compiled in _compiled(subject, alphabet, primes):
        for seed in SEEDS:
            for _ in walk(compiled, context, seed=seed):
                pass  # the walk fails on a row with no finite logit


def _first_difference(
    steps: list[Step], row: int, masks: list[Tensor], index: int
) -> tuple[Step, Tensor] | None:
    """The first step of ``steps`` where ``row`` allowed other ids than ``masks[t][index]``."""
    for step in steps:
        other = masks[step.number][index]
        if not torch.equal(step.allowed[row], other):
            return step, other
    return None


def _differ(context: ConstraintContext, first: Tensor, then: Tensor, names: tuple[str, str]) -> str:
    """What each of two masks of one row ``(V,)`` allows that the other does not; ``names``
    says whose masks they are."""
    parts = []
    for mine, other, (me, them) in ((first, then, names), (then, first, names[::-1])):
        if bool((mine & ~other).any()):
            parts.append(f"{me} allowed {named(context, mine & ~other)}, {them} did not")
    return "; ".join(parts)


@register_check("constraint")
def check_constraint_deterministic(
    subject: Subject, *, alphabet: Any = None, primes: Any = None
) -> None:
    """The same ids give the same masks: a walk's ids, fed again to a new tracker of the same
    compiled constraint and to one of a constraint built and compiled afresh, are masked as
    the walk masked them.

    Beam search, several samples of one prime and a saved seed all rely on it: a mask may
    depend on the ids fed so far, the options and the prime, and on nothing else.
    """
    for context, compiled in _compiled(subject, alphabet, primes):
        fresh = subject.build_checked()
        again = compile_for(fresh, attrs.evolve(context, constraints=(fresh,)))
        for seed in SEEDS[:2]:
            steps = [step for step, _ in walk(compiled, context, seed=seed)]
            histories = steps[-1].histories
            for how, target in (("", compiled), (" of the constraint built afresh", again)):
                masks = replay(target, context, histories)
                for row, ids in enumerate(histories):
                    found = _first_difference(steps, row, masks, row)
                    if found is None:
                        continue
                    step, other = found
                    text = text_of(context, ids[: step.number])
                    raise CheckError(
                        f"the same ids, fed again to a new tracker{how}, were masked otherwise: at "
                        f"step {step.number}, after "
                        f"{text!r} (the prime {context.prime!r}), "
                        + _differ(context, step.allowed[row], other, ("the walk", "the replay")),
                        "make the mask a function of the ids fed so far, the options and the "
                        "prime: no random numbers, no time, no state kept on the constraint or "
                        "the compiled constraint between generations (start() makes each "
                        "generation's state).",
                    )


@register_check("constraint")
def check_constraint_batch_independence(
    subject: Subject, *, alphabet: Any = None, primes: Any = None
) -> None:
    """Rows are independent: each row of a walk of 3 rows is masked as it is when its ids are
    fed to a tracker of one row.

    The decoder runs several samples of a prime, and beam search its beams, as rows of one
    batch; a row's mask must depend on that row's ids alone.
    """
    for context, compiled in _compiled(subject, alphabet, primes):
        for seed in SEEDS[:2]:
            steps = [step for step, _ in walk(compiled, context, seed=seed)]
            for row, ids in enumerate(steps[-1].histories):
                alone = replay(compiled, context, [ids])
                found = _first_difference(steps, row, alone, 0)
                if found is None:
                    continue
                step, other = found
                raise CheckError(
                    f"row {row} of a batch of {BATCH} was masked otherwise than alone: at step "
                    f"{step.number}, after {text_of(context, ids[: step.number])!r} (the prime "
                    f"{context.prime!r}), "
                    + _differ(context, step.allowed[row], other, ("in the batch it", "alone it")),
                    "keep one row of state per sequence (a tensor of B rows, or a list) and "
                    "compute row b's mask from row b's ids only.",
                )


@register_check("constraint")
def check_constraint_follows_reorder(
    subject: Subject, *, alphabet: Any = None, primes: Any = None
) -> None:
    """After ``reorder(index)``, as beam search calls it, the masks follow the rows.

    A walk of 3 rows is reordered four times (keeping and repeating rows, growing the batch to
    4, shrinking it back: ``REORDERS``), and each row of every step is masked as a tracker of
    one row fed that row's ids alone masks it.
    """
    for context, compiled in _compiled(subject, alphabet, primes):
        for seed in SEEDS[:2]:
            steps = [step for step, _ in walk(compiled, context, seed=seed, reorders=REORDERS)]
            alone: dict[tuple[int, ...], Tensor] = {}
            for step in reversed(steps):  # the longest histories first: their prefixes come free
                for row, ids in enumerate(step.histories):
                    if ids not in alone:
                        masks = replay(compiled, context, [ids])
                        alone.update({ids[:n]: masks[n][0] for n in range(len(ids) + 1)})
                    if torch.equal(step.allowed[row], alone[ids]):
                        continue
                    moves = [f"{index} at step {k}" for k, index in REORDERS.items()]
                    raise CheckError(
                        f"after reorder(index) the masks did not follow the rows (the walk "
                        f"reordered them by {', '.join(moves)}): at step {step.number}, row "
                        f"{row}, after {text_of(context, ids)!r} (the prime {context.prime!r}), "
                        + _differ(
                            context,
                            step.allowed[row],
                            alone[ids],
                            ("the reordered tracker", "a tracker fed the row's ids alone"),
                        ),
                        "in reorder(index), index every per-row state with it "
                        "(state.index_select(0, index), [rows[i] for i in index]); index may "
                        "repeat rows and change the batch size, as beam search does.",
                    )


@register_check("constraint")
def check_allows_agrees_with_mask(
    subject: Subject, *, alphabet: Any = None, primes: Any = None
) -> None:
    """``allows(ids, vocab_size)`` agrees with ``mask``: an id is allowed exactly when its
    masked logit is finite, for every id of the vocabulary, in every row and at every step of
    walks after each prime.

    The decoder asks ``allows`` whether the ids a sampler chose are allowed (and raises if not),
    so an override that disagrees with the mask blames samplers for its own mistakes, or lets
    forbidden ids through.
    """
    for context, compiled in _compiled(subject, alphabet, primes):
        vocab = context.vocab_size
        for seed in SEEDS[:2]:
            for step, tracker in walk(compiled, context, seed=seed):
                rows = len(step.histories)
                for i in range(vocab):
                    said = tracker.allows(torch.full((rows,), i, dtype=torch.long), vocab)
                    wrong = (said != step.allowed[:, i]).nonzero().flatten().tolist()
                    if not wrong:
                        continue
                    row = wrong[0]
                    verdict = "allowed" if bool(said[row]) else "forbidden"
                    logit = "-inf" if verdict == "allowed" else "finite"
                    raise CheckError(
                        f"allows said {named(context, torch.arange(vocab) == i)} is {verdict} "
                        f"in row {row} at step {step.number}, after "
                        f"{text_of(context, step.histories[row])!r} (the prime "
                        f"{context.prime!r}), but mask left its logit {logit}",
                        "allows(ids, vocab_size) answers, for each row, whether mask leaves "
                        "that row's id finite. Drop the override (the default masks a row of "
                        "zeros and gathers) or make it read the same state as mask.",
                    )


@register_check("constraint")
def check_end_within_text(subject: Subject, *, alphabet: Any = None, primes: Any = None) -> None:
    """``end(text)`` is ``None`` or an int in ``[0, len(text)]``: the number of characters of
    the generated ``text`` to keep. Tried on the empty text and every prefix of the texts of
    walks after each prime."""
    for context, compiled in _compiled(subject, alphabet, primes):
        texts = {""}
        for seed in SEEDS:
            steps = [step for step, _ in walk(compiled, context, seed=seed)]
            for ids in steps[-1].histories:
                text = text_of(context, ids)
                texts.update(text[:n] for n in range(len(text) + 1))
        for text in sorted(texts, key=lambda t: (len(t), t)):
            end = compiled.end(text)
            require(
                end is None or (is_int(end) and 0 <= end <= len(text)),
                f"end({text!r}) returned {end!r} (the prime {context.prime!r}); expected None "
                f"or an int in [0, {len(text)}]",
                "end(text) says how many characters of the generated text to keep (the text is "
                "cut to text[:end]); return None where the constraint does not end it.",
            )
