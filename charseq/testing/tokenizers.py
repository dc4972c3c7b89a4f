"""Conformance checks for tokenizers.

Each check takes the tokenizer to test as a registry Component, a ``"tokenizer:name"`` string,
or a factory ``make_tokenizer()`` returning a fresh, unfitted :class:`charseq.Tokenizer`.
Checks fit it on the texts they draw. Which texts a tokenizer round-trips is its ``texts`` tag
(default ``"unicode"``: any text without surrogates); a tokenizer that covers less says so with
``__charseq_tags__`` or the checks' ``texts=`` argument::

    from charseq.testing import check_decode_encode_round_trip, strategies
    check_decode_encode_round_trip(MyTokenizer, texts=strategies.texts("prose"))
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from charseq.checks import is_int
from charseq.errors import CharseqError
from charseq.interfaces import UNKNOWN_POLICIES, Tokenizer
from charseq.testing._base import (
    CheckError,
    CheckSkipped,
    Subject,
    kit_settings,
    register_check,
    require,
)
from charseq.testing.strategies import texts as text_strategy

__all__ = [
    "check_decode_encode_round_trip",
    "check_ids_in_range",
    "check_stream_decoder_matches_decode",
    "check_tokenizer_api",
    "check_unknown_policy",
    "check_vocab_json_round_trip",
]

_CORPUS = "hello world\nthe cat sat.\n"


def _fitted(subject: Subject, text: str, **overrides: Any) -> Tokenizer:
    tokenizer = subject.build_checked(**overrides)
    tokenizer.fit(text)
    return tokenizer


_MANY_SYMBOLS = "The quick brown fox jumps over the lazy dog while five boxing wizards jump quickly"
"""Always tried with a named text family (it belongs to each): 14 distinct words and 29 distinct
characters, so a vocabulary of more than ten symbols is certain to be exercised (drawn texts are
often shorter, and bugs such as ids kept as JSON string keys, where "10" sorts before "2", show
only from the eleventh symbol on)."""


def _for_texts(subject: Subject, texts: Any, test: Any) -> None:
    family = subject.tags.get("texts", "unicode") if texts is None else texts
    strategy = text_strategy(family)

    @kit_settings()
    @given(text=strategy)
    def drawn(text: str) -> None:
        test(text)

    if isinstance(family, str):
        drawn = example(text=_MANY_SYMBOLS)(drawn)
    elif isinstance(family, dict):
        drawn = example(text=family["alphabet"])(drawn)  # every symbol, at least once
    drawn()


def _check_ids(ids: Any, text: str, vocab_size: int) -> list[int]:
    require(
        isinstance(ids, list) and all(type(i) is int for i in ids),
        f"encode({text!r}) returned {type(ids).__name__} "
        f"{[type(i).__name__ for i in ids][:5] if isinstance(ids, list) else ''}, "
        "not a list of Python ints",
        "return a list of int (convert numpy or torch values with int() or .tolist()).",
    )
    outside = [i for i in ids if not 0 <= i < vocab_size]
    require(
        not outside,
        f"encode({text!r}) produced ids {outside[:5]} outside range(vocab_size={vocab_size})",
        "vocab_size must count every id encode can produce, including special ids such as an "
        "unknown-character id.",
    )
    return ids


@register_check("tokenizer")
def check_tokenizer_api(subject: Subject, *, texts: Any = None) -> None:
    """The tokenizer follows the :class:`charseq.Tokenizer` contract, fitted on drawn texts.

    ``fit`` returns the tokenizer itself, which is then fitted with a positive ``vocab_size``;
    the empty text encodes to ``[]`` and ``[]`` decodes to ``""``; two tokenizers fitted on the
    same text give the same ids.
    """

    def test(text: str) -> None:
        tokenizer = subject.build_checked()
        fitted = tokenizer.fit(text)
        require(
            fitted is tokenizer,
            f"fit returned {fitted!r} instead of the tokenizer",
            "end fit with `return self`.",
        )
        require(tokenizer.is_fitted, "is_fitted is False after fit", "set the vocabulary in fit.")
        size = tokenizer.vocab_size
        require(
            is_int(size) and size > 0,
            f"vocab_size is {size!r} after fit; expected a positive int",
            "return the number of ids as an int.",
        )
        require(
            tokenizer.encode("") == [],
            f"encode('') returned {tokenizer.encode('')!r}",
            "the empty text has no ids.",
        )
        require(
            tokenizer.decode([]) == "",
            f"decode([]) returned {tokenizer.decode([])!r}",
            "no ids decode to the empty text.",
        )
        twin = _fitted(subject, text)
        require(
            tokenizer.encode(text) == twin.encode(text),
            f"two tokenizers fitted on {text!r} give different ids",
            "build the vocabulary in a deterministic order (e.g. sorted(set(text))), not "
            "from set or dict iteration order that can change between runs.",
        )

    _for_texts(subject, texts, test)


@register_check("tokenizer")
def check_decode_encode_round_trip(subject: Subject, *, texts: Any = None) -> None:
    """``decode(encode(s)) == s`` for drawn texts ``s`` the tokenizer is fitted on.

    Also decodes from an iterator, since ``decode`` takes any iterable of ids, and checks that
    ``encode_array(s)`` holds the ids of ``encode(s)``. ``texts`` is a
    Hypothesis strategy or a family name from :data:`charseq.testing.strategies.TEXTS`;
    default: the tokenizer's ``texts`` tag.
    """

    def test(text: str) -> None:
        tokenizer = _fitted(subject, text)
        ids = _check_ids(tokenizer.encode(text), text, tokenizer.vocab_size)
        decoded = tokenizer.decode(ids)
        require(
            decoded == text,
            f"decode(encode(s)) != s for s = {text!r}: got {decoded!r} (ids {ids[:20]})",
            "encode must keep everything decode needs (whitespace, case, every code point), or "
            "the tokenizer must claim fewer texts through its `texts` tag (__charseq_tags__).",
        )
        again = tokenizer.decode(iter(ids))
        require(
            again == text,
            f"decode(iter(ids)) gave {again!r} for s = {text!r}",
            "decode takes any iterable of ids: iterate it once, do not index or len() it.",
        )
        array = tokenizer.encode_array(text)
        require(
            hasattr(array, "tolist") and array.tolist() == ids,
            f"encode_array(s) != encode(s) for s = {text!r}: got {array!r}, expected {ids[:20]}",
            "the corpus reader encodes with encode_array: it must return the ids encode "
            "returns, as a numpy integer array (or do not override it).",
        )

    _for_texts(subject, texts, test)


@register_check("tokenizer")
def check_ids_in_range(subject: Subject, *, texts: Any = None) -> None:
    """Every id ``encode`` produces is a Python ``int`` in ``range(vocab_size)``.

    Checked for a drawn text after fitting on it, and, for each lenient unknown policy the
    tokenizer accepts (``"replace"``, ``"skip"``), after fitting on a fixed corpus that need not
    contain the text's characters (so replacement ids are counted too).
    """
    lenient = [p for p in ("replace", "skip") if _accepts(subject, p)]

    def test(text: str) -> None:
        tokenizer = _fitted(subject, text)
        _check_ids(tokenizer.encode(text), text, tokenizer.vocab_size)
        for policy in lenient:
            tokenizer = _fitted(subject, _CORPUS, unknown=policy)
            for sample in (text, _CORPUS):
                _check_ids(tokenizer.encode(sample), sample, tokenizer.vocab_size)

    _for_texts(subject, texts, test)


@register_check("tokenizer")
def check_vocab_json_round_trip(subject: Subject, *, texts: Any = None) -> None:
    """``state_dict`` survives JSON and gives a fresh tokenizer identical ids.

    ``json.loads(json.dumps(tokenizer.state_dict()))`` loaded into a new unfitted instance with
    ``load_state_dict`` gives the same ``vocab_size``, ids and decoded text.
    """
    fix = (
        "state_dict must hold only JSON types (dict with str keys, list, str, int, float, bool, "
        "None) and load_state_dict must rebuild the whole vocabulary from them; note that JSON "
        "turns int dict keys into strings and tuples into lists."
    )

    def test(text: str) -> None:
        tokenizer = _fitted(subject, text)
        state = tokenizer.state_dict()
        try:
            dumped = json.dumps(state)
        except (TypeError, ValueError) as error:
            raise CheckError(f"state_dict() is not JSON-serialisable: {error}", fix) from None
        fresh = subject.build_checked()
        fresh.load_state_dict(json.loads(dumped))
        require(fresh.is_fitted, "is_fitted is False after load_state_dict", fix)
        require(
            fresh.vocab_size == tokenizer.vocab_size,
            f"vocab_size {tokenizer.vocab_size} became {fresh.vocab_size} after a JSON "
            "round trip of state_dict",
            fix,
        )
        ids = tokenizer.encode(text)
        reloaded = fresh.encode(text)
        require(
            reloaded == ids,
            f"ids for {text!r} changed after a JSON round trip of "
            f"state_dict: {ids[:20]} -> {reloaded[:20]}",
            fix,
        )
        require(
            fresh.decode(ids) == tokenizer.decode(ids),
            f"decode({ids[:20]}) changed after a JSON round trip of state_dict",
            fix,
        )

    _for_texts(subject, texts, test)


_STRANGERS = ("\u03a9", "\u00e9", "\U0001f600", "\x00", "~")
_KNOWN = "ab ab\n"


@register_check("tokenizer", requires=("stream_decoder",))
def check_stream_decoder_matches_decode(subject: Subject) -> None:
    """A ``stream_decoder``'s pieces join to ``decode`` of all the ids, for any ids in the
    vocabulary (a model writes sequences no text encodes to) fed in any chunks."""
    wide = "é😀ü中 "  # characters of 2, 4, 2 and 3 UTF-8 bytes
    try:
        tokenizer = _fitted(subject, _MANY_SYMBOLS + _CORPUS + wide)
        known = tokenizer.encode(wide * 2)  # what a text encodes to, cut below at every width
    except CharseqError:  # a tokenizer for narrower texts
        tokenizer, known = _fitted(subject, _MANY_SYMBOLS + _CORPUS), []
    size = tokenizer.vocab_size

    @kit_settings()
    @given(
        ids=st.lists(st.integers(0, size - 1), max_size=40),
        cuts=st.lists(st.integers(1, 5), min_size=1, max_size=40),
    )
    @example(ids=known, cuts=[1])
    @example(ids=known, cuts=[2])
    @example(ids=known, cuts=[3])
    def drawn(ids: list[int], cuts: list[int]) -> None:
        decode = tokenizer.stream_decoder()
        pieces, start = [], 0
        for width in cuts * (len(ids) // len(cuts) + 1):
            if start >= len(ids):
                break
            pieces.append(decode(ids[start : start + width], False))
            start += width
        pieces.append(decode([], True))
        require(
            "".join(pieces) == tokenizer.decode(ids),
            f"ids {ids} fed in chunks gave {''.join(pieces)!r}; decode gives "
            f"{tokenizer.decode(ids)!r}",
            "return from each call only the text the ids so far have fixed, and the rest when "
            "final=True (for UTF-8 bytes: codecs.getincrementaldecoder).",
        )

    drawn()


@register_check("tokenizer", requires=("unknown_policy",))
def check_unknown_policy(subject: Subject) -> None:
    """The ``unknown`` option governs characters the fitted vocabulary lacks.

    Fitted on ``"ab ab\\n"`` and given that text followed by a character it has not seen:
    ``"error"`` raises a :class:`charseq.CharseqError` whose message names the character;
    ``"skip"`` gives the same ids as without it; ``"replace"`` gives one id more, in range.
    Policies the options class does not accept are not tried.
    """
    policies = [p for p in UNKNOWN_POLICIES if _accepts(subject, p)]
    if not policies:
        raise CheckSkipped(f"{subject.label} accepts none of unknown={UNKNOWN_POLICIES}")
    stranger = _find_stranger(subject)
    text = _KNOWN + stranger
    for policy in policies:
        tokenizer = _fitted(subject, _KNOWN, unknown=policy)
        known_ids = tokenizer.encode(_KNOWN)
        if policy == "error":
            try:
                ids = tokenizer.encode(text)
            except CharseqError as error:
                named = stranger in str(error) or f"U+{ord(stranger):04X}" in str(error).upper()
                require(
                    named,
                    f"unknown='error' raised {error!r}, which does not name the "
                    f"unknown character {stranger!r}",
                    "put the character (and where it is) in the message, e.g. "
                    "\"character 'Ω' (U+03A9) at position 6 is not in the vocabulary\".",
                )
            except Exception as error:
                raise CheckError(
                    f"unknown='error' raised {type(error).__name__}: {error}, not a CharseqError",
                    "raise charseq.errors.CharseqError (or a subclass) so users can catch it.",
                ) from error
            else:
                raise CheckError(
                    f"unknown='error' encoded {text!r} to {ids} without raising",
                    "raise a CharseqError naming the first unknown character.",
                )
        elif policy == "skip":
            ids = tokenizer.encode(text)
            require(
                ids == known_ids,
                f"unknown='skip' encoded {text!r} to {ids}; without the "
                f"unknown {stranger!r} it is {known_ids}",
                "drop unknown characters.",
            )
        else:
            ids = _check_ids(tokenizer.encode(text), text, tokenizer.vocab_size)
            require(
                len(ids) == len(known_ids) + 1,
                f"unknown='replace' encoded {text!r} to "
                f"{ids}; expected {known_ids} plus one id for {stranger!r}",
                "map each unknown character to one replacement id.",
            )


def _accepts(subject: Subject, policy: str) -> bool:
    """Whether the tokenizer has an ``unknown`` option that takes ``policy``."""
    return "unknown" in subject.option_names and subject.accepts(unknown=policy)


def _find_stranger(subject: Subject) -> str:
    """A character the tokenizer, fitted on ``_KNOWN``, does not cover."""
    probe = _fitted(subject, _KNOWN, **({"unknown": "error"} if _accepts(subject, "error") else {}))
    for stranger in _STRANGERS:
        try:
            if probe.decode(probe.encode(_KNOWN + stranger)) != _KNOWN + stranger:
                return stranger
        except Exception:
            return stranger
    raise CheckSkipped(
        f"{subject.label} covers every character tried ({_STRANGERS!r}) after fitting on "
        f"{_KNOWN!r}, so it has no unknown characters to test"
    )
