"""The kit's one list of checks and one table of tags (charseq.testing.checklist, .tags)."""

from __future__ import annotations

import charseq.testing
from charseq.testing import (
    all_checks,
    cells,
    check_greedy_is_argmax,
    check_sampler_api,
    check_top_k_support,
    constraints,
    get_tags,
    samplers,
)
from charseq.testing.checklist import CHECKS, checks_for
from charseq.testing.tags import TAGS


def test_checks_for_lists_every_check_in_order_with_why_it_is_skipped():
    listed = list(checks_for("sampler:greedy"))
    assert [check for check, _ in listed] == all_checks("sampler")
    reasons = dict(listed)
    assert reasons[check_sampler_api] is None
    assert reasons[check_greedy_is_argmax] is None
    assert "it needs a `top_k` option" in reasons[check_top_k_support]


def test_every_check_is_listed_once_and_needs_only_tags_of_its_kind():
    for kind, checks in CHECKS.items():
        assert len(set(checks)) == len(checks)
        for check in checks:
            assert check.kind == kind
            assert all(TAGS[tag].kind == kind for tag in check.requires)


def test_get_tags_documents_every_tag_from_the_table():
    for name, tag in TAGS.items():
        assert f"``{name}``: {tag.doc.split()[0]}" in get_tags.__doc__


def test_the_modules_that_held_the_checks_still_export_them():
    for module in (cells, samplers, constraints):
        for name in module.__all__:
            assert getattr(module, name) is getattr(charseq.testing, name)


def test_constraints_are_a_checked_kind_whose_context_is_a_tag():
    assert [check.kind for check in all_checks("constraint")] == ["constraint"] * 7
    assert set(get_tags("constraint:stop")) == {"alphabet", "primes"}
    assert "Constraints:" in get_tags.__doc__
