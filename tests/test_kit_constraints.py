"""The conformance kit's constraint checks (charseq.testing.constraints) can fail, and say why.

Each broken constraint below breaks one thing the decoder relies on; the test asserts that the
check for it fails with a message naming the problem and how to fix it. The built-in
constraints pass the same checks in tests/test_conformance.py.
"""

from __future__ import annotations

import pytest
import torch

from charseq.constraints import (
    CompiledConstraint,
    Constraint,
    ConstraintTracker,
    GenerationError,
    TextConstraint,
)
from charseq.testing import (
    CheckError,
    all_checks,
    check_allows_agrees_with_mask,
    check_component,
    check_constraint_api,
    check_constraint_batch_independence,
    check_constraint_deterministic,
    check_constraint_follows_reorder,
    check_end_within_text,
    check_never_masks_every_id,
    get_tags,
    parametrize_with_checks,
)
from charseq.testing.fixtures import CONSTRAINT_ALPHABET, CONSTRAINT_PRIMES

# -- a correct tensor constraint, and the ways to break it -----------------------------------------


class NoRepeat(Constraint):
    """No id again within two: each row's last two ids are forbidden next."""

    label = "no repeat"

    def compile(self, context):
        return CompiledNoRepeat(self)


class CompiledNoRepeat(CompiledConstraint):
    def __init__(self, constraint):
        self.constraint = constraint

    def start(self, batch_size, device):
        return type(self.constraint).tracker(batch_size, device)


class NoRepeatTracker(ConstraintTracker):
    def __init__(self, batch, device):
        self.last = torch.full((batch, 2), -1, dtype=torch.long, device=device)  # (B, 2)

    def forbidden(self, logits):
        ids = torch.arange(logits.shape[1], device=logits.device)  # (V,)
        return (ids.view(1, -1, 1) == self.last.unsqueeze(1)).any(-1)  # (B, V)

    def mask(self, logits):
        return logits.masked_fill(self.forbidden(logits), float("-inf"))

    def advance(self, ids):
        self.last = torch.stack([self.last[:, 1], ids], dim=1)

    def reorder(self, index):
        self.last = self.last.index_select(0, index)


NoRepeat.tracker = NoRepeatTracker


def broken(tracker_class, name):
    """``NoRepeat`` with another tracker."""
    return type(name, (NoRepeat,), {"tracker": tracker_class})


class MasksEverything(NoRepeatTracker):
    def mask(self, logits):
        return torch.full_like(logits, float("-inf"))


class RandomMask(NoRepeatTracker):
    """Forbids a random half of the ids (never all): not a function of the ids fed."""

    def mask(self, logits):
        forbid = torch.rand(logits.shape) < 0.5
        forbid[:, 0] = False
        return logits.masked_fill(forbid, float("-inf"))


class LeaksAcrossRows(NoRepeatTracker):
    """Forbids in every row the last id of row 0."""

    def forbidden(self, logits):
        return super().forbidden(logits)[:1].expand(logits.shape[0], -1)


class IgnoresReorder(NoRepeatTracker):
    """Keeps the right number of rows, but not the rows the index names."""

    def reorder(self, index):
        self.last = self.last[torch.arange(index.numel()) % self.last.shape[0]]


class AllowsEverything(NoRepeatTracker):
    def allows(self, ids, vocab_size):
        return torch.ones_like(ids, dtype=torch.bool)


class WritesIntoLogits(NoRepeatTracker):
    def mask(self, logits):
        return logits.masked_fill_(self.forbidden(logits), float("-inf"))


class ScalesLogits(NoRepeatTracker):
    def mask(self, logits):
        return super().mask(logits) * 0.5


class EndsPastTheText(NoRepeat):
    def compile(self, context):
        compiled = super().compile(context)
        compiled.end = lambda text: len(text) + 1
        return compiled


class CompilesToATracker(NoRepeat):
    def compile(self, context):
        return NoRepeatTracker(1, torch.device("cpu"))


class DotsForever(TextConstraint):
    """After a full stop only full stops; after two, nothing at all (an empty string)."""

    label = "the dots"

    def allowed_next(self, text, prime):
        if text.endswith(".."):
            return ""
        return "." if "." in text else None


def test_a_correct_constraint_passes_every_check():
    outcomes = check_component(NoRepeat)
    assert set(outcomes) == {check.__name__ for check in all_checks("constraint")}
    assert set(outcomes.values()) == {"passed"}


@pytest.mark.parametrize(
    ("constraint", "check", "message"),
    [
        (broken(MasksEverything, "MasksEverything"), check_never_masks_every_id, "no finite logit"),
        (DotsForever, check_never_masks_every_id, "leaves no character of the vocabulary"),
        (broken(RandomMask, "RandomMask"), check_constraint_deterministic, "masked otherwise"),
        (broken(LeaksAcrossRows, "Leaks"), check_constraint_batch_independence, "than alone"),
        (broken(IgnoresReorder, "IgnoresReorder"), check_constraint_follows_reorder, "follow"),
        (broken(AllowsEverything, "AllowsAll"), check_allows_agrees_with_mask, "but mask left"),
        (broken(WritesIntoLogits, "Writes"), check_constraint_api, "wrote into the logits"),
        (broken(ScalesLogits, "Scales"), check_constraint_api, "other than by setting them"),
        (EndsPastTheText, check_end_within_text, "expected None or an int in [0, "),
        (CompilesToATracker, check_constraint_api, "not a charseq.constraints.Compiled"),
    ],
    ids=lambda p: getattr(p, "__name__", None),
)
def test_the_kit_rejects_a_broken_constraint(constraint, check, message):
    with pytest.raises(CheckError) as caught:
        check(constraint)
    text = str(caught.value)
    assert message in text
    assert f"charseq.testing.{check.__name__} failed for constraint" in text
    assert "How to fix:" in text


def test_a_constraint_that_masks_everything_is_told_where_and_how():
    failure = pytest.raises(
        CheckError, check_never_masks_every_id, broken(MasksEverything, "MasksEverything")
    ).value
    assert "row 0 of 3 after the text '' (the prime '', step 0" in failure.problem
    assert "allow any id" in failure.fix


# -- the context the checks compile for ------------------------------------------------------------


class NeedsTabs(TextConstraint):
    """Tabs only between words: refused where the vocabulary has no tab."""

    label = "the tabs"

    def check(self, context):
        if context.one_id("\t") is None:
            raise GenerationError("the tabs need a tab in the vocabulary")

    def allowed_next(self, text, prime):
        return "\t" if text.endswith(" ") else None


class SaysItNeedsTabs(NeedsTabs):
    def __charseq_tags__(self):
        return {"alphabet": "ab \t\n", "primes": ("",)}


def test_a_constraint_the_default_context_refuses_is_told_how_to_say_what_it_needs():
    failure = pytest.raises(CheckError, check_constraint_api, NeedsTabs).value
    assert "compile refused the kit's request" in failure.problem
    assert "the tabs need a tab" in failure.problem
    assert "__charseq_tags__" in failure.fix and "'alphabet'" in failure.fix


def test_tags_or_arguments_give_a_constraint_the_context_it_needs():
    assert get_tags(NeedsTabs, "constraint") == {
        "alphabet": CONSTRAINT_ALPHABET,
        "primes": CONSTRAINT_PRIMES,
    }
    assert get_tags(SaysItNeedsTabs, "constraint")["alphabet"] == "ab \t\n"
    assert set(check_component(SaysItNeedsTabs).values()) == {"passed"}
    check_never_masks_every_id(NeedsTabs, alphabet="xy \t", primes="x ")


def test_a_bad_alphabet_tag_is_named():
    with pytest.raises(CheckError, match="alphabet tag is ''"):
        check_constraint_api(NeedsTabs, alphabet="")


@parametrize_with_checks([SaysItNeedsTabs, NoRepeat])
def test_parametrize_with_checks_takes_constraint_classes(component, check):
    check(component)


def test_the_test_ids_name_the_constraint_and_the_check():
    ids = [p.id for p in parametrize_with_checks([NoRepeat]).args[1]]
    assert ids == [f"constraint:NoRepeat-{c.__name__}" for c in all_checks("constraint")]
