"""The built-in tokenizers: round trips, unknown policies, state, errors, registration."""

from __future__ import annotations

import inspect
import json

import attrs
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from charseq.builtins import tokenizers
from charseq.builtins.tokenizers import (
    UNK,
    ByteTokenizer,
    CharTokenizer,
    NotFittedError,
    TokenizerError,
    UnknownCharacterError,
    WordTokenizer,
    split_words,
)
from charseq.errors import CharseqError, SpecError
from charseq.options import build_options
from charseq.registry import Registry

# Any valid Unicode text: letters, emoji, CJK, combining marks, control characters.
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)
corpora = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=60)
wordy_text = st.lists(
    st.sampled_from(
        ["the", "cat", "don't", "Ünïcödé", "猫", "😀", ",", "!", " ", "  ", "\n", "\t"]
    ),
    min_size=1,
    max_size=30,
).map("".join)


def json_round_trip(tokenizer, fresh):
    fresh.load_state_dict(json.loads(json.dumps(tokenizer.state_dict())))
    return fresh


# -- byte ---------------------------------------------------------------------------------------


@given(any_text)
def test_byte_round_trips_any_text(text):
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert all(0 <= i < tok.vocab_size == 256 for i in ids)
    assert tok.decode(ids) == text


def test_byte_emoji_and_cjk():
    tok = ByteTokenizer()
    for text in ["😀🎉", "猫は可愛い", "e\u0301", "\x00\n\t"]:
        assert tok.decode(tok.encode(text)) == text
    assert tok.is_fitted and tok.fit("anything") is tok


def test_byte_decodes_invalid_utf8_with_replacement():
    tok = ByteTokenizer()
    assert tok.decode([0xFF, 65]) == "\ufffdA"
    assert tok.decode(tok.encode("é")[:1]) == "\ufffd"  # half a character


def test_byte_accepts_tensors_and_checks_range():
    tok = ByteTokenizer()
    assert tok.decode(torch.tensor([104, 105])) == "hi"
    assert tok.decode([]) == ""
    with pytest.raises(TokenizerError, match="id 256 is outside the vocabulary"):
        tok.decode([65, 256])
    with pytest.raises(TokenizerError, match="id -1"):
        tok.decode([-1])


def test_byte_surrogates():
    tok = ByteTokenizer()
    raw = b"caf\xe9"  # Latin-1 bytes read as UTF-8 with surrogateescape
    assert bytes(tok.encode(raw.decode("utf-8", "surrogateescape"))) == raw
    with pytest.raises(TokenizerError, match="lone surrogate"):
        tok.encode("a\ud800")


def test_byte_state():
    tok = json_round_trip(ByteTokenizer(), ByteTokenizer())
    assert tok.state_dict() == {"type": "byte"}
    with pytest.raises(TokenizerError, match="'char' tokenizer, not 'byte'"):
        tok.load_state_dict({"type": "char", "vocab": ["a"]})


# -- char ---------------------------------------------------------------------------------------


@given(corpora, st.data())
def test_char_round_trips_text_of_its_alphabet(corpus, data):
    tok = CharTokenizer().fit(corpus)
    assert tok.vocab == tuple(sorted(set(corpus)))
    text = data.draw(st.text(st.sampled_from(sorted(set(corpus))), max_size=80))
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text
    assert ids == [tok.vocab.index(c) for c in text]


@given(corpora, any_text)
def test_char_state_json_round_trip_gives_identical_ids(corpus, text):
    tok = CharTokenizer(unknown="skip").fit(corpus)
    loaded = json_round_trip(tok, CharTokenizer())
    assert loaded.unknown == "skip"
    assert loaded.vocab == tok.vocab
    assert loaded.encode(text) == tok.encode(text)


def test_char_vocabulary_is_sorted_and_deterministic():
    a = CharTokenizer().fit("hello world")
    b = CharTokenizer().fit("world hello")
    assert a.vocab == b.vocab == (" ", "d", "e", "h", "l", "o", "r", "w")
    assert a.encode("hole") == [3, 5, 4, 2]
    assert a.state_dict() == {
        "type": "char",
        "unknown": "error",
        "replacement": "\ufffd",
        "vocab": list(a.vocab),
    }


def test_char_unknown_error_names_characters_positions_and_remedies():
    tok = CharTokenizer().fit("hello world")
    with pytest.raises(UnknownCharacterError) as caught:
        tok.encode("héllo wörld é")
    error = caught.value
    assert isinstance(error, CharseqError) and isinstance(error, ValueError)
    message = str(error)
    assert "'é' (U+00E9) at positions 1, 12" in message
    assert "'ö' (U+00F6) at position 7" in message
    assert "2 characters" in message
    assert "unknown='skip'" in message and "unknown='replace'" in message
    assert "'byte'" in message
    assert error.unknown == {"é": [1, 12], "ö": [7]}


def test_char_unknown_error_is_bounded_on_long_text():
    tok = CharTokenizer().fit("ab")
    with pytest.raises(UnknownCharacterError) as caught:
        tok.encode("x" * 10_000 + "".join(chr(0x4E00 + i) for i in range(20)))
    message = str(caught.value)
    assert "'x' (U+0078) at positions 0, 1, 2, 3, 4 and 9995 more" in message
    assert "and 13 more" in message  # 21 unknown characters, 8 named
    assert len(message) < 1000


def test_char_emoji_error():
    tok = CharTokenizer().fit("abc")
    with pytest.raises(UnknownCharacterError, match=r"'😀' \(U\+1F600\) at position 1"):
        tok.encode("a😀")


@given(corpora, any_text)
def test_char_skip_and_replace(corpus, text):
    skip = CharTokenizer(unknown="skip").fit(corpus)
    assert skip.decode(skip.encode(text)) == "".join(c for c in text if c in set(corpus))
    replace = CharTokenizer(unknown="replace", replacement="?").fit(corpus)
    assert "?" in replace.vocab
    expected = "".join(c if c in set(corpus) | {"?"} else "?" for c in text)
    ids = replace.encode(text)
    assert len(ids) == len(text)
    assert replace.decode(ids) == expected


def test_char_replacement_joins_vocabulary_only_when_replacing():
    assert "\ufffd" in CharTokenizer(unknown="replace").fit("ab").vocab
    assert "\ufffd" not in CharTokenizer(unknown="skip").fit("ab").vocab
    assert CharTokenizer(unknown="replace").fit("ab").decode([2]) == "\ufffd"


def test_char_not_fitted_and_bad_input():
    tok = CharTokenizer()
    assert not tok.is_fitted
    for call in (lambda: tok.encode("a"), lambda: tok.decode([0]), lambda: tok.vocab_size):
        with pytest.raises(NotFittedError, match=r"call fit\(text\)"):
            call()
    with pytest.raises(NotFittedError):
        tok.state_dict()
    with pytest.raises(TokenizerError, match="empty text"):
        tok.fit("")
    with pytest.raises(TokenizerError, match="takes a str"):
        tok.fit(b"bytes")  # type: ignore[arg-type]
    tok.fit("ab")
    assert tok.is_fitted
    with pytest.raises(TokenizerError, match="id 2 is outside the vocabulary"):
        tok.decode([0, 2])
    assert tok.encode("") == [] and tok.decode([]) == ""


def test_char_bad_options_and_states():
    with pytest.raises(SpecError, match="single character"):
        CharTokenizer(replacement="ab")
    with pytest.raises(SpecError, match="char.unknown"):
        CharTokenizer(unknown="ignore")  # type: ignore[arg-type]
    tok = CharTokenizer()
    with pytest.raises(TokenizerError, match="'byte' tokenizer, not 'char'"):
        tok.load_state_dict({"type": "byte"})
    with pytest.raises(TokenizerError, match="duplicate"):
        tok.load_state_dict({"type": "char", "vocab": ["a", "a"]})
    with pytest.raises(TokenizerError, match="replacement"):
        tok.load_state_dict({"type": "char", "unknown": "replace", "vocab": ["a"]})
    with pytest.raises(TokenizerError, match="single characters"):
        tok.load_state_dict({"type": "char", "vocab": ["ab"]})
    assert not tok.is_fitted  # a rejected state changes nothing


def test_char_supplementary_and_surrogate_characters():
    corpus = "a😀\U0010fffd\ud800"  # astral characters and a lone surrogate
    tok = CharTokenizer().fit(corpus)
    assert tok.decode(tok.encode(corpus)) == corpus
    assert json_round_trip(tok, CharTokenizer()).encode(corpus) == tok.encode(corpus)


# -- word ---------------------------------------------------------------------------------------


@given(any_text)
def test_split_words_covers_every_character(text):
    tokens = split_words(text)
    assert "".join(tokens) == text
    assert all(tokens)


def test_split_words():
    assert split_words("Don't stop,  me!\n") == ["Don't", " ", "stop", ",", "  ", "me", "!", "\n"]


@given(wordy_text, st.data())
def test_word_round_trips_text_of_its_vocabulary(corpus, data):
    corpus += "|"  # a separator: one punctuation token, so drawn tokens cannot merge
    tok = WordTokenizer().fit(corpus)
    pieces = sorted(set(split_words(corpus)))
    assert tok.vocab == tuple(pieces)
    text = data.draw(st.lists(st.sampled_from(pieces), max_size=30).map("|".join))
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


@given(wordy_text, wordy_text)
def test_word_encodes_known_tokens_or_names_the_unknown_ones(corpus, text):
    tok = WordTokenizer().fit(corpus)
    missing = [t for t in split_words(text) if t not in tok.vocab]
    if missing:
        with pytest.raises(UnknownCharacterError) as caught:
            tok.encode(text)
        assert set(caught.value.unknown) == set(missing)
    else:
        assert tok.decode(tok.encode(text)) == text


@given(wordy_text, any_text, st.sampled_from(["skip", "replace"]), st.integers(0, 6))
def test_word_state_json_round_trip_gives_identical_ids(corpus, text, unknown, max_vocab):
    tok = WordTokenizer(max_vocab=max_vocab, unknown=unknown).fit(corpus)
    assert max_vocab == 0 or tok.vocab_size <= max_vocab
    loaded = json_round_trip(tok, WordTokenizer())
    assert (loaded.max_vocab, loaded.unknown, loaded.vocab) == (max_vocab, unknown, tok.vocab)
    assert loaded.encode(text) == tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in tok.encode(text))


def cut_into_chunks(text, cuts):
    points = sorted({min(c, len(text)) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


@given(
    wordy_text.map(lambda t: t + "'t’s x"),
    st.lists(st.integers(0, 80), max_size=8),
    st.sampled_from(["error", "skip", "replace"]),
    st.integers(0, 6),
)
def test_fit_chunks_equals_fit_on_the_whole_text_for_any_chunking(text, cuts, unknown, max_vocab):
    if unknown == "error":
        max_vocab = 0
    chunks = cut_into_chunks(text, cuts)
    chunked = WordTokenizer(max_vocab=max_vocab, unknown=unknown).fit_chunks(iter(chunks))
    assert chunked.vocab == WordTokenizer(max_vocab=max_vocab, unknown=unknown).fit(text).vocab
    for unknown_char in ("error", "replace"):
        char = CharTokenizer(unknown=unknown_char)
        assert char.fit_chunks(chunks).vocab == CharTokenizer(unknown=unknown_char).fit(text).vocab


def test_fit_chunks_of_nothing_is_refused():
    for tok in (CharTokenizer(), WordTokenizer()):
        with pytest.raises(TokenizerError, match="empty text"):
            tok.fit_chunks(["", ""])
        with pytest.raises(TokenizerError, match="takes a str"):
            tok.fit_chunks([b"bytes"])


def test_word_max_vocab_keeps_most_frequent_ties_by_text():
    corpus = "b b b a a c c d"
    tok = WordTokenizer(max_vocab=4, unknown="replace").fit(corpus)
    # counts: ' ' 7, b 3, a 2, c 2, d 1; room for 3 besides <unk>: ' ', b, then a (a < c)
    assert tok.vocab == (UNK, " ", "a", "b")
    assert tok.decode(tok.encode("a c d")) == f"a {UNK} {UNK}"
    skip = WordTokenizer(max_vocab=3, unknown="skip").fit(corpus)
    assert skip.vocab == (" ", "a", "b")
    assert skip.decode(skip.encode("a c b")) == "a  b"


def test_word_max_vocab_with_error_policy_is_refused_at_fit():
    with pytest.raises(TokenizerError, match="max_vocab=2 keeps 2 of the 4 distinct") as caught:
        WordTokenizer(max_vocab=2).fit("a b c")
    assert "unknown='replace'" in str(caught.value)
    assert WordTokenizer(max_vocab=4).fit("a b c").vocab == (" ", "a", "b", "c")


def test_word_unknown_error_names_tokens_and_offsets():
    tok = WordTokenizer().fit("Don't stop me now!")
    with pytest.raises(UnknownCharacterError) as caught:
        tok.encode("Don't go now, go!")
    message = str(caught.value)
    assert "'go' at positions 6, 14" in message
    assert "',' (U+002C) at position 12" in message
    assert "unknown='skip'" in message and "<unk>" in message
    assert caught.value.unknown == {"go": [6, 14], ",": [12]}


def test_word_not_fitted_and_bad_input():
    tok = WordTokenizer()
    with pytest.raises(NotFittedError, match=r"'word' tokenizer .* call fit\(text\)"):
        tok.encode("a")
    with pytest.raises(TokenizerError, match="empty text"):
        tok.fit("")
    with pytest.raises(SpecError, match="word.max_vocab: must be >= 0"):
        WordTokenizer(max_vocab=-1)
    tok.fit("a b")
    with pytest.raises(TokenizerError, match="id 3 is outside"):
        tok.decode([3])
    with pytest.raises(TokenizerError, match="needs '<unk>'"):
        tok.load_state_dict({"type": "word", "unknown": "replace", "vocab": ["a"]})


# -- speed, registration ------------------------------------------------------------------------


def test_a_few_megabytes_round_trip():
    # No timing here (speed claims live in benchmarks/); this catches per-character slow paths
    # only by the suite's total time.
    corpus = "The quick brown fox, naïve café, 猫 jumps over the lazy dog!\n" * 40_000  # ~2.4 MB
    for tok in (CharTokenizer(), ByteTokenizer(), WordTokenizer()):
        tok.fit(corpus)
        assert tok.decode(tok.encode(corpus)) == corpus


def test_registered_with_options():
    registry = Registry()
    registry.register(tokenizers, "builtin_tokenizers")
    assert registry.names("tokenizer") == ["byte", "char", "word"]
    for name, cls in [("char", CharTokenizer), ("byte", ByteTokenizer), ("word", WordTokenizer)]:
        component = registry.get("tokenizer", name)
        options = build_options(component.options, {}, "tokenizer")
        tok = component.factory(**attrs.asdict(options, recurse=False))
        assert isinstance(tok, cls)
    options = build_options(registry.get("tokenizer", "char").options, {"unknown": "skip"}, "t")
    assert options.unknown == "skip"
    with pytest.raises(SpecError) as caught:
        build_options(registry.get("tokenizer", "char").options, {"unknown": "skp"}, "tokenizer")
    assert caught.value.path == "tokenizer.unknown"
    assert "did you mean 'skip'" in str(caught.value)


@pytest.mark.parametrize(
    ("cls", "options"),
    [(CharTokenizer, tokenizers.CharOptions), (WordTokenizer, tokenizers.WordOptions)],
)
def test_signature_defaults_match_the_options_class(cls, options):
    parameters = inspect.signature(cls).parameters
    declared = {f.name: f.default for f in attrs.fields(options)}
    assert {k: p.default for k, p in parameters.items()} == declared


def test_a_huge_word_vocabulary_kept_whole_is_warned_about(monkeypatch):
    monkeypatch.setattr(tokenizers, "LARGE_WORD_VOCABULARY", 5)
    text = "one two three four five six seven"
    with pytest.warns(UserWarning, match="keeps all 8 distinct tokens .* set max_vocab"):
        WordTokenizer().fit(text)
    WordTokenizer(max_vocab=9, unknown="replace").fit(text)  # capped: no warning
