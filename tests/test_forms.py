"""Verse forms, clause acrostics and constraint plugins: tensorflow_poems' job on its own format
(one poem a line, ``title:poem``, four clauses of five characters ended by ``，`` or ``。``)."""

from __future__ import annotations

import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import charseq
from charseq import Pipeline
from charseq.constraints import (
    FORMS,
    ConstraintContext,
    Constraints,
    GenerationError,
    TextConstraint,
    fits,
    template_of,
)
from charseq.registry import Owner, Registry
from tests._helpers import SMALL, quatrains, step_calls

POEMS = quatrains(60)
SAMPLERS = {
    "greedy": "greedy",
    "temperature": {"name": "temperature", "temperature": 1.5},
    "top_p": {"name": "temperature", "top_p": 0.5, "top_k": 3},
    "beam": {"name": "beam", "num_beams": 3},
}
pytestmark = pytest.mark.filterwarnings("ignore:.* is deterministic:UserWarning")


@pytest.fixture(scope="module")
def poet():
    return Pipeline.from_spec(SMALL, device="cpu").fit(POEMS)


def clauses(poem: str) -> list[str]:
    """The clauses of a poem, without their punctuation."""
    return [c for c in poem.replace("。", "，").split("，") if c]


def test_the_named_forms_and_fits():
    assert template_of("wujue") == "?????，?????。?????，?????。"
    assert len(template_of("qilv")) == 8 * 8 and template_of("??x") == "??x"
    assert fits("春眠不覺曉，處處聞啼鳥。夜來風雨聲，花落知多少。", FORMS["wujue"])
    assert not fits("春眠不覺曉，處處聞啼鳥。夜來風雨聲，花落知多少", FORMS["wujue"])  # short
    assert not fits("春眠不覺，曉處處聞啼鳥。夜來風雨聲，花落知多少。", FORMS["wujue"])
    assert not fits("春眠不覺\n，處處聞啼鳥。夜來風雨聲，花落知多少。", FORMS["wujue"])


@pytest.mark.parametrize("sampler", SAMPLERS.values(), ids=SAMPLERS.keys())
def test_a_clause_acrostic_in_a_form_is_one_poem_with_its_heads(poet, sampler):
    texts = poet.generate(
        "春日:", 200, sampler=sampler, seed=1, num_samples=2, acrostic="春夏秋冬",
        acrostic_after="，。:", form="wujue",
    )  # fmt: skip
    for text in texts:
        assert fits(text, FORMS["wujue"]), text
        assert [c[0] for c in clauses(text)] == list("春夏秋冬")


def test_with_a_form_the_heads_open_its_clauses_by_default(poet):
    text = poet.generate("山:", 50, seed=2, acrostic="山水", form="wujue")
    assert fits(text, FORMS["wujue"]) and [c[0] for c in clauses(text)][:2] == ["山", "水"]
    free = poet.generate("", 50, seed=2, acrostic="山水", acrostic_after="，。")
    assert free.startswith("山") and "\n" in free  # no form: the text runs on


def test_a_clause_acrostic_without_a_form_puts_heads_after_the_clause_ends(poet):
    text = poet.generate("春日:", 40, seed=3, acrostic="春夏秋冬", acrostic_after="，。:")
    assert text.startswith("春")
    pieces = [text[i + 1] for i, c in enumerate(text[:-1]) if c in "，。"][:3]
    assert pieces == list("夏秋冬")[: len(pieces)]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), name=st.sampled_from(list(SAMPLERS)))
def test_streamed_forms_equal_generated_ones_and_end_with_the_form(poet, seed, name):
    kwargs = {"sampler": SAMPLERS[name], "seed": seed, "acrostic": "江雲", "form": "wujue"}
    streamed = "".join(poet.stream("山:", 100, **kwargs))
    assert streamed == poet.generate("山:", 100, **kwargs)
    assert fits(streamed, FORMS["wujue"])


@pytest.mark.parametrize("sampler", SAMPLERS.values(), ids=SAMPLERS.keys())
def test_generation_stops_once_the_form_is_filled(poet, sampler):
    with step_calls(poet.model) as calls:
        text = poet.generate("", 5000, sampler=sampler, form="wujue")
    assert fits(text, FORMS["wujue"]) and len(calls) <= len(FORMS["wujue"])


def test_a_template_gives_lines_of_a_fixed_length_in_any_script():
    from tests._helpers import TEXT

    pipe = Pipeline.from_spec(SMALL, device="cpu").fit(TEXT)
    text = pipe.generate("", 100, seed=0, form="??????????\n" * 3, sampler={"name": "temperature"})
    assert [len(line) for line in text.split("\n")] == [10, 10, 10, 0]
    both = pipe.generate("", 100, seed=0, form="?????\n" * 2, acrostic="ta", allowed="tae \n")
    assert [line[:1] for line in both.split("\n")[:2]] == ["t", "a"] and set(both) <= set("tae \n")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"form": "wujeu"}, r"unknown form 'wujeu'; did you mean 'wujue'\?: the forms are"),
        ({"form": ""}, "form must be a form's name"),
        ({"form": "?????！"}, r"needs '！' \(U\+FF01\), which the vocabulary cannot write"),
        ({"form": "wujue", "allowed": "春，"}, r"needs '。' .*, which the allowed set does not"),
        ({"form": "wujue", "allowed": "，。"}, "free places that no character of the vocab"),
        ({"form": "wujue", "acrostic": "春夏秋冬山"}, "5 heads and the form 'wujue' has room fo"),
        ({"form": "wujue", "acrostic": "春，"}, r"'，' \(U\+FF0C\) at position 1 is fixed in the"),
        ({"form": "wujue", "acrostic": "春X"}, r"outside the vocabulary: 'X' \(U\+0058\) at pos"),
        (
            {"form": "wujue", "acrostic": "春夏秋冬", "acrostic_after": "，"},
            r"4 heads .* room for 2: .* \(the prime does not end with one of them\)",
        ),
        ({"acrostic_after": "，"}, "needs acrostic=... \\(the heads"),
        ({"acrostic": "春", "acrostic_after": "，Q"}, r"needs 'Q' \(U\+0051\), which the voc"),
        ({"constraints": ["rhyme"]}, "unknown constraint 'rhyme'"),
        ({"constraints": [{"name": "form", "templat": "x"}]}, r"constraints\[0\].templat"),
        ({"constraints": [42]}, r"constraints\[0\] must be a constraint's name"),
    ],
)
def test_bad_requests_get_specific_errors_before_generation(poet, kwargs, message):
    calls = []
    handle = poet.model.register_forward_hook(lambda *args: calls.append(1))
    try:
        with pytest.raises(charseq.CharseqError, match=message):
            poet.generate("山:", 10, **kwargs)
        with pytest.raises(charseq.CharseqError, match=message):
            poet.stream("山:", 10, **kwargs)
    finally:
        handle.remove()
    assert calls == []


def test_a_form_is_a_registered_constraint_too(poet):
    by_name = poet.generate("山:", 40, seed=4, constraints=[{"name": "form", "template": "wujue"}])
    assert by_name == poet.generate("山:", 40, seed=4, form="wujue")
    for table in ({"name": "acrostic", "heads": "山水", "after": "，。:"}, "acrostic"):
        if table == "acrostic":  # no after of its own: the heads open the form's clauses
            table = {"name": "acrostic", "heads": "山水"}
        text = poet.generate("山:", 40, seed=4, constraints=["form", table])  # form: wujue
        assert fits(text, FORMS["wujue"]) and [c[0] for c in clauses(text)][:2] == ["山", "水"]


class NoRepeat(TextConstraint):
    """Never the same character twice in a row; the text is done after ``length`` characters."""

    label = "no repeat"

    def __init__(self, length: int = 0) -> None:
        self.length = length

    def forbidden_next(self, text, prime):
        return (prime + text)[-1:]

    def done(self, text, prime):
        return 0 < self.length <= len(text)


@pytest.mark.parametrize("sampler", SAMPLERS.values(), ids=SAMPLERS.keys())
def test_a_text_constraint_holds_for_every_sampler(poet, sampler):
    texts = poet.generate(
        "春春", 30, sampler=sampler, seed=5, num_samples=2, constraints=[NoRepeat()]
    )
    for text in texts:
        whole = "春春" + text
        assert len(text) == 30 and all(a != b for a, b in zip(whole[1:], whole[2:], strict=False))
    ended = poet.generate("", 30, sampler=sampler, seed=5, constraints=[NoRepeat(7)])
    assert len(ended) == 7
    assert "".join(poet.stream("", 30, sampler=sampler, seed=5, constraints=[NoRepeat(7)])) == ended


def test_a_third_party_constraint_registers_through_the_hook(poet):
    def charseq_register_constraints(registry):
        registry.add("no_repeat", NoRepeat)

    module = types.ModuleType("charseq_no_repeat")
    module.charseq_register_constraints = charseq.hookimpl(charseq_register_constraints)
    registry = Registry.load()
    registry.register(module, Owner("no_repeat", "charseq-no-repeat", "0.1"))
    assert "no_repeat" in registry.names("constraint")
    assert {"stop", "allowed", "acrostic", "form"} <= set(registry.names("constraint"))
    spec = poet.spec
    pipe = Pipeline.from_spec(spec, registry=registry, device="cpu").fit(POEMS)
    text = pipe.generate("", 30, seed=6, constraints=["no_repeat"])
    assert all(a != b for a, b in zip(text, text[1:], strict=False))


def test_the_request_builds_the_constraints_in_order_of_checking(poet):
    parts = Constraints(allowed="春", stop="x", form="wujue", acrostic="春").parts()
    assert [type(p).__name__ for p in parts] == ["Allowed", "Stop", "Form", "Acrostic"]
    placed = parts[-1].placed(ConstraintContext(poet.tokenizer, "山:", parts))
    assert placed.after == "，。" and placed.at_start  # the form's clause ends, from its start
    alone = parts[-1].placed(ConstraintContext(poet.tokenizer, "山:", parts[-1:]))
    assert alone.after == "\n" and not alone.at_start  # lines; the prime ends mid-line


def test_a_text_constraint_that_leaves_nothing_is_named_at_fault(poet):
    class Nothing(TextConstraint):
        label = "nothing"

        def allowed_next(self, text, prime):
            return "" if text else None

    with pytest.raises(GenerationError, match=r"'nothing' leaves no character .* allowed nothing"):
        poet.generate("", 10, constraints=[Nothing()])
