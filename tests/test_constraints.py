"""Constraints (stop strings, allowed sets, acrostics) hold for every sampler, beam included."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from charseq import Pipeline
from charseq.constraints import (
    Constraints,
    GenerationError,
    apply_stop,
    cut_at_stop,
    held_back,
)
from tests._helpers import SMALL, TEXT, step_calls

VOCAB = sorted(set(TEXT))
# The constraints hold for every sampler, the deterministic ones included, which warn that
# several samples of one prime are identical.
pytestmark = pytest.mark.filterwarnings("ignore:.* is deterministic:UserWarning")

SAMPLERS = {
    "greedy": "greedy",
    "temperature": {"name": "temperature", "temperature": 2.0},
    "top_p": {"name": "temperature", "top_p": 0.5, "top_k": 3},
    "beam": {"name": "beam", "num_beams": 3},
}


@pytest.fixture(scope="module")
def pipe():
    return Pipeline.from_spec(SMALL, device="cpu").fit(TEXT)


def test_stop_helpers_cut_at_the_earliest_ending_stop_string():
    assert apply_stop("abcdef", ["cd"]) == "abcd"  # included, as Hugging Face does
    assert apply_stop("abcdef", ["de", "bcdef"]) == "abcde"
    assert apply_stop("abcdef", ["x"]) == "abcdef"
    assert cut_at_stop("abab", ["ab"], start=1) == 4
    assert held_back("the ca", ["cat", "x"]) == 2 and held_back("the c", ["at"]) == 0


@pytest.mark.parametrize("sampler", SAMPLERS.values(), ids=SAMPLERS.keys())
def test_stop_strings_cut_every_sample(pipe, sampler):
    stops = ["at", "\n"]
    free = pipe.generate("the ", 60, sampler=sampler, seed=3, num_samples=3)
    cut = pipe.generate("the ", 60, sampler=sampler, seed=3, num_samples=3, stop=stops)
    for whole, text in zip(free, cut, strict=True):
        assert text == apply_stop(whole, stops) and whole.startswith(text)
        ends = [text.endswith(s) for s in stops]
        assert any(ends) or text == whole
        assert cut_at_stop(text[:-1], stops) is None  # nothing stopped earlier


def test_token_samplers_end_early_once_every_sequence_stopped(pipe):
    with step_calls(pipe.model) as calls:
        text = pipe.generate("the c", 5000, sampler="greedy", stop=["t"])
    assert text.endswith("t") and 0 < len(calls) < 50


@pytest.mark.parametrize("name", SAMPLERS.keys())
@given(data=st.data())
def test_the_allowed_set_is_always_honoured(pipe, name, data):
    allowed = data.draw(st.sets(st.sampled_from(VOCAB), min_size=1, max_size=6))
    seed = data.draw(st.integers(0, 2**16))
    prime = data.draw(st.sampled_from(["", "the ", "ran far.\n"]))
    texts = pipe.generate(
        prime, 25, sampler=SAMPLERS[name], seed=seed, num_samples=2, allowed="".join(allowed)
    )
    for text in texts:
        assert len(text) == 25 and set(text) <= allowed


@pytest.mark.parametrize("name", SAMPLERS.keys())
@given(data=st.data())
def test_an_acrostic_forces_the_first_character_of_every_line(pipe, name, data):
    acrostic = "".join(data.draw(st.lists(st.sampled_from(VOCAB[1:]), min_size=1, max_size=4)))
    seed = data.draw(st.integers(0, 2**16))
    allowed = data.draw(st.none() | st.just("".join(set(acrostic) | set("ta \n"))))
    text = pipe.generate(
        "", 80, sampler=SAMPLERS[name], seed=seed, acrostic=acrostic, allowed=allowed
    )
    lines = text.split("\n")
    for line, char in zip(lines, acrostic, strict=False):
        assert line[:1] == char or (line == lines[-1] and line == "")
    if allowed is not None:
        assert set(text) <= set(allowed)


def test_an_acrostic_after_a_prime_starts_at_the_next_line(pipe):
    sampler = {"name": "temperature", "temperature": 1.5}
    text = pipe.generate(
        "the cat", 100, sampler=sampler, seed=1, acrostic="dt", allowed="tadoghe \n"
    )
    lines = ("the cat" + text).split("\n")
    assert lines[0].startswith("the cat")
    for line, char in zip(lines[1:], "dt", strict=False):
        assert line[:1] in (char, "")
    assert "\n" in text  # the allowed set makes lines end, so the acrostic was reached


def test_acrostic_with_beam_keeps_the_best_constrained_sequence(pipe):
    text = pipe.generate("", 100, sampler={"name": "beam", "num_beams": 4}, acrostic="adt")
    for line, char in zip(text.split("\n"), "adt", strict=False):
        assert line[:1] in (char, "")
    assert text.startswith("a")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stop": "Q"}, r"stop string 'Q' can never be produced by the vocabulary: 'Q'"),
        ({"stop": ""}, "must not be empty"),
        ({"stop": "cat", "allowed": "at"}, r"'c' \(U\+0063\) not in the allowed set"),
        ({"allowed": "aQz"}, r"allowed characters outside the vocabulary: 'Q' .*, 'z'"),
        ({"allowed": ""}, "the allowed set is empty"),
        ({"acrostic": "tZa!"}, r"'Z' \(U\+005A\) at position 1; '!' \(U\+0021\) at position 3"),
        ({"acrostic": "t\na"}, "newline at position 1"),
        ({"acrostic": ""}, "non-empty"),
        ({"acrostic": "td", "allowed": "ta\n"}, r"outside the allowed set: 'd' .* at position 1"),
        ({"acrostic": "ta", "allowed": "ta"}, "needs '\\\\n' in the allowed set"),
    ],
)
def test_bad_constraints_get_specific_errors_before_generation(pipe, kwargs, message):
    calls = []
    pipe.model.register_forward_hook(lambda *args: calls.append(1))
    with pytest.raises(GenerationError, match=message):
        pipe.generate("the ", 10, **kwargs)
    with pytest.raises(GenerationError, match=message):
        pipe.stream("the ", 10, **kwargs)
    assert calls == []
    pipe.model._forward_hooks.clear()


def test_constraints_compile_to_ids(pipe):
    compiled = Constraints(stop=("at",), allowed="ta\n", acrostic="ta").compile(pipe.tokenizer, "x")
    allowed, stop, acrostic = compiled.parts  # checked in this order
    assert stop.ids == [pipe.tokenizer.encode("at")] and compiled.stop == ("at",)
    assert int(allowed.ids.sum()) == 3 and not acrostic.at_start
    assert acrostic.pieces == [pipe.tokenizer.encode("t"), pipe.tokenizer.encode("a")]
    assert acrostic.after == pipe.tokenizer.encode("\n")
    assert not Constraints().active and Constraints(stop="x").stop == ("x",)
