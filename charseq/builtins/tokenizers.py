"""The built-in tokenizers: ``char`` (code points), ``byte`` (UTF-8 bytes) and ``word``.

``char`` and ``word`` learn a sorted, deterministic vocabulary with :meth:`fit`; ``byte`` has a
fixed vocabulary of 256 ids and covers any text. Text outside a fitted vocabulary follows the
``unknown`` policy: ``"error"`` (the default) raises :class:`UnknownCharacterError` naming what
is missing and where, ``"skip"`` drops it, ``"replace"`` maps it to a replacement token.

Encoding is vectorised (NumPy over UTF-32 code points for ``char``, one regular expression and
a dict lookup for ``word``), so a corpus of a few megabytes encodes in well under a second.
"""

from __future__ import annotations

import codecs
import collections
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs
import numpy as np

from charseq.errors import TokenizerError, UnknownCharacterError, warn
from charseq.hookspecs import hookimpl
from charseq.interfaces import Tokenizer
from charseq.options import NoOptions, OptionError, build_options, option

if TYPE_CHECKING:
    from charseq.registry import Registrar

UnknownPolicy = Literal["error", "skip", "replace"]
_POLICIES = ("error", "skip", "replace")
_MAX_LISTED = 8  # unknown characters named in an error message
_MAX_POSITIONS = 5  # positions named per unknown character
_TABLE_LIMIT = 1 << 19  # code points below this get a dense code point -> id table (4 MiB)


class NotFittedError(TokenizerError):
    """The tokenizer has no vocabulary yet: call ``fit(text)`` (or ``load_state_dict``) first."""


# -- options ------------------------------------------------------------------------------------


def _one_character(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str) or len(value) != 1:
        raise OptionError(attribute.name, f"must be a single character, got {value!r}")


def _policy(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value not in _POLICIES:
        listed = ", ".join(map(repr, _POLICIES))
        raise OptionError(attribute.name, f"must be one of {listed}, got {value!r}")


_UNKNOWN_HELP = (
    "what to do with text outside the vocabulary: 'error' (raise), 'skip' (drop it) "
    "or 'replace' (map it to the replacement token)"
)


@attrs.frozen(kw_only=True)
class CharOptions:
    """Options of the ``char`` tokenizer."""

    unknown: UnknownPolicy = option("error", help=_UNKNOWN_HELP, validator=_policy)
    replacement: str = option(
        "\ufffd",
        help="the character unknown ones become with unknown='replace' (added to the vocabulary)",
        validator=_one_character,
    )


@attrs.frozen(kw_only=True)
class WordOptions:
    """Options of the ``word`` tokenizer."""

    max_vocab: int = option(
        0, help="keep the most frequent tokens, <unk> included (0: keep all)", min=0
    )
    unknown: UnknownPolicy = option("error", help=_UNKNOWN_HELP, validator=_policy)


# -- helpers ------------------------------------------------------------------------------------


def _as_id_array(ids: Iterable[int]) -> np.ndarray:
    """Any iterable of ints (a list, a NumPy array, a torch tensor) as a 1-D int64 array."""
    if hasattr(ids, "tolist"):  # torch tensors and numpy arrays
        ids = ids.tolist()
    elif not isinstance(ids, list | tuple):
        ids = list(ids)
    array = np.asarray(ids, dtype=np.int64)
    if array.ndim != 1:
        raise TokenizerError(f"decode takes a 1-D sequence of ids, got shape {array.shape}")
    return array


def _check_ids(array: np.ndarray, size: int) -> None:
    if array.size and (array.min() < 0 or array.max() >= size):
        bad = int(array[(array < 0) | (array >= size)][0])
        raise TokenizerError(f"id {bad} is outside the vocabulary (ids 0 to {size - 1})")


def _code_points(text: str) -> np.ndarray:
    """The code points of ``text`` (lone surrogates included) as a uint32 array."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def _from_code_points(points: np.ndarray) -> str:
    return points.astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")


def _describe_char(char: str) -> str:
    return f"{char!r} (U+{ord(char):04X})"


def _unknown_message(
    what: str, unknown: dict[str, list[int]], counts: dict[str, int], remedy: str
) -> str:
    """'the text has 2 characters outside the vocabulary: 'é' (U+00E9) at position 3; ...'."""
    parts = []
    for token in list(unknown)[:_MAX_LISTED]:
        positions = unknown[token]
        where = ", ".join(map(str, positions))
        more = counts[token] - len(positions)
        if more:
            where += f" and {more} more"
        label = "position" if counts[token] == 1 else "positions"
        described = _describe_char(token) if len(token) == 1 else repr(token)
        parts.append(f"{described} at {label} {where}")
    if len(unknown) > _MAX_LISTED:
        parts.append(f"and {len(unknown) - _MAX_LISTED} more")
    plural = "" if len(unknown) == 1 else "s"
    return (
        f"the text has {len(unknown)} {what}{plural} outside the vocabulary: "
        + "; ".join(parts)
        + f". {remedy}"
    )


def _check_state(state: Any, kind: str) -> None:
    if not isinstance(state, dict):
        raise TokenizerError(f"a {kind!r} tokenizer state is a dict, got {type(state).__name__}")
    found = state.get("type")
    if found != kind:
        raise TokenizerError(
            f"this state is for a {found!r} tokenizer, not {kind!r}; "
            "build the tokenizer the checkpoint names"
        )


def _check_vocab(vocab: Any, kind: str) -> list[str]:
    if not isinstance(vocab, list) or not all(isinstance(t, str) and t for t in vocab):
        raise TokenizerError(f"a {kind!r} tokenizer state needs 'vocab': a list of strings")
    if len(set(vocab)) != len(vocab):
        raise TokenizerError(f"the {kind!r} vocabulary in this state has duplicate tokens")
    if not vocab:
        raise TokenizerError(f"the {kind!r} vocabulary in this state is empty")
    return vocab


def _options(cls: type, name: str, **values: Any) -> Any:
    """Validate constructor arguments through the options class (errors name ``name.option``)."""
    return build_options(cls, values, name)


def _require_str(text: Any, call: str) -> None:
    if not isinstance(text, str):
        raise TokenizerError(f"{call} takes a str, got {type(text).__name__}")


class _FittedVocabulary(Tokenizer):
    """A tokenizer whose vocabulary is learnt by ``fit``: ``_vocab`` is ``None`` until then.

    Subclasses set ``kind`` (named in messages) and ``_vocab`` (through their ``_set_vocab``).
    """

    kind: str
    _vocab: tuple[str, ...] | None

    @property
    def is_fitted(self) -> bool:
        return self._vocab is not None

    @property
    def vocab(self) -> tuple[str, ...]:
        """The tokens, id order."""
        return self._fitted_vocab()

    @property
    def vocab_size(self) -> int:
        return len(self._fitted_vocab())

    def _fitted_vocab(self) -> tuple[str, ...]:
        if self._vocab is None:
            raise NotFittedError(
                f"the {self.kind!r} tokenizer has no vocabulary yet: call fit(text) on the corpus "
                "first (or load_state_dict from a checkpoint)"
            )
        return self._vocab

    def _check_fit_text(self, text: Any) -> None:
        _require_str(text, "fit")
        if not text:
            raise TokenizerError(f"cannot fit the {self.kind!r} tokenizer on empty text")

    def _check_encode_text(self, text: Any) -> tuple[str, ...]:
        """The fitted vocabulary, once ``text`` is known to be a str."""
        vocab = self._fitted_vocab()
        _require_str(text, "encode")
        return vocab


# -- char ---------------------------------------------------------------------------------------


class CharTokenizer(_FittedVocabulary):
    """One id per Unicode code point seen in the corpus, in code-point order.

    Args:
        unknown: ``"error"``, ``"skip"`` or ``"replace"``, for characters not seen by ``fit``.
        replacement: with ``unknown="replace"``, the character unknown ones become; it joins
            the vocabulary at ``fit``.

    Example::

        >>> tok = CharTokenizer().fit("hello")
        >>> tok.vocab, tok.encode("hole")
        (('e', 'h', 'l', 'o'), [1, 3, 2, 0])
    """

    kind = "char"

    def __init__(self, *, unknown: UnknownPolicy = "error", replacement: str = "\ufffd") -> None:
        opts = _options(CharOptions, "char", unknown=unknown, replacement=replacement)
        self.unknown: UnknownPolicy = opts.unknown
        self.replacement: str = opts.replacement
        self._set_vocab(None)

    def _set_vocab(self, vocab: Sequence[str] | None) -> None:
        if vocab is None:
            self._vocab: tuple[str, ...] | None = None
            self._points = np.zeros(0, dtype=np.uint32)
            self._table: np.ndarray | None = None
            return
        points = np.array([ord(c) for c in vocab], dtype=np.uint32)
        order = np.argsort(points, kind="stable")
        self._vocab = tuple(vocab)
        self._order = order  # sorted position -> id
        self._sorted_points = points[order]
        # Code point -> id (-1: unknown), when the vocabulary's code points are small enough
        # for a dense table (at most 4 MiB); encoding is then one gather.
        top = int(points.max()) if points.size else 0
        self._table = None
        if top < _TABLE_LIMIT:
            self._table = np.full(top + 1, -1, dtype=np.int64)
            self._table[points] = np.arange(len(points))
        self._points = points  # id -> code point

    def fit(self, text: str) -> CharTokenizer:
        """Learn the sorted set of characters of ``text`` (plus the replacement, if replacing)."""
        self._check_fit_text(text)
        chars = set(text)
        if self.unknown == "replace":
            chars.add(self.replacement)
        self._set_vocab(sorted(chars))
        return self

    def fit_chunks(self, chunks: Iterable[str]) -> CharTokenizer:
        """:meth:`fit` on the concatenated ``chunks``, holding one chunk at a time.

        The vocabulary is the union of the chunks' character sets, so any split of a text into
        chunks gives the same vocabulary as fitting the whole.
        """
        chars: set[str] = set()
        for chunk in chunks:
            _require_str(chunk, "fit_chunks")
            chars.update(chunk)
        if not chars:
            raise TokenizerError(f"cannot fit the {self.kind!r} tokenizer on empty text")
        if self.unknown == "replace":
            chars.add(self.replacement)
        self._set_vocab(sorted(chars))
        return self

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def encode_array(self, text: str) -> np.ndarray:
        vocab = self._check_encode_text(text)
        points = _code_points(text)
        if points.size == 0:
            return np.zeros(0, dtype=np.int64)
        if self._table is not None:
            ids = self._table[np.minimum(points, len(self._table) - 1)]  # (N,)
            known = (ids >= 0) & (points < len(self._table))
        else:
            slot = np.searchsorted(self._sorted_points, points)
            slot = np.minimum(slot, len(vocab) - 1)
            known = self._sorted_points[slot] == points
            ids = self._order[slot]
        if not known.all():
            if self.unknown == "error":
                raise self._unknown_error(text, points, known)
            if self.unknown == "skip":
                ids = ids[known]
            else:
                ids = np.where(known, ids, vocab.index(self.replacement))
        return ids

    def _unknown_error(
        self, text: str, points: np.ndarray, known: np.ndarray
    ) -> UnknownCharacterError:
        where = np.flatnonzero(~known)
        unknown: dict[str, list[int]] = {}
        counts: collections.Counter[str] = collections.Counter()
        for position, point in zip(where.tolist(), points[where].tolist(), strict=True):
            char = chr(point)
            counts[char] += 1
            if len(unknown.setdefault(char, [])) < _MAX_POSITIONS:
                unknown[char].append(position)
        remedy = (
            "Fit on a corpus that contains them, or build the tokenizer with unknown='skip' "
            "(drop them) or unknown='replace' (map them to "
            f"{_describe_char(self.replacement)}), or use the 'byte' tokenizer, which covers "
            "any text."
        )
        message = _unknown_message("character", unknown, counts, remedy)
        return UnknownCharacterError(message, unknown)

    def decode(self, ids: Iterable[int]) -> str:
        vocab = self._fitted_vocab()
        array = _as_id_array(ids)
        _check_ids(array, len(vocab))
        return _from_code_points(self._points[array])

    def state_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "unknown": self.unknown,
            "replacement": self.replacement,
            "vocab": list(self._fitted_vocab()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the vocabulary and the unknown policy saved by :meth:`state_dict`."""
        _check_state(state, self.kind)
        opts = _options(
            CharOptions,
            "char",
            unknown=state.get("unknown", self.unknown),
            replacement=state.get("replacement", self.replacement),
        )
        vocab = _check_vocab(state.get("vocab"), self.kind)
        if any(len(c) != 1 for c in vocab):
            raise TokenizerError("a 'char' vocabulary holds single characters")
        if opts.unknown == "replace" and opts.replacement not in vocab:
            raise TokenizerError(
                f"the replacement {_describe_char(opts.replacement)} is not in the vocabulary"
            )
        self.unknown, self.replacement = opts.unknown, opts.replacement
        self._set_vocab(vocab)

    def __repr__(self) -> str:
        size = len(self._vocab) if self._vocab is not None else "unfitted"
        return f"CharTokenizer(unknown={self.unknown!r}, vocab_size={size})"


# -- byte ---------------------------------------------------------------------------------------


class ByteTokenizer(Tokenizer):
    """The UTF-8 bytes of the text: a fixed vocabulary of 256 ids that covers any text.

    Decoding replaces invalid byte sequences (a model's half-written character) with U+FFFD.
    Text read with ``errors="surrogateescape"`` round-trips its raw bytes.

    Example::

        >>> ByteTokenizer().encode("é!")
        [195, 169, 33]
    """

    kind = "byte"

    def __init__(self) -> None:
        pass

    @property
    def vocab_size(self) -> int:
        return 256

    def encode(self, text: str) -> list[int]:
        return list(self._bytes(text))

    def encode_array(self, text: str) -> np.ndarray:
        return np.frombuffer(self._bytes(text), dtype=np.uint8).copy()  # writable, like encode

    def _bytes(self, text: str) -> bytes:
        _require_str(text, "encode")
        try:
            return text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as error:
            char = text[error.start]
            raise TokenizerError(
                f"the text has a lone surrogate {_describe_char(char)} at position "
                f"{error.start}, which is not valid Unicode and has no UTF-8 bytes"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        return _id_bytes(ids).decode("utf-8", "replace")

    def stream_decoder(self) -> Callable[[Sequence[int], bool], str]:
        """UTF-8 decoding of bytes that arrive a few at a time: a character's first bytes wait
        for the rest, and an invalid sequence is replaced once it is known to be invalid."""
        decoder = codecs.getincrementaldecoder("utf-8")("replace")

        def decode(ids: Sequence[int], final: bool = False) -> str:
            return decoder.decode(_id_bytes(ids), final)

        return decode

    def state_dict(self) -> dict[str, Any]:
        return {"type": self.kind}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_state(state, self.kind)

    def __repr__(self) -> str:
        return "ByteTokenizer()"


def _id_bytes(ids: Iterable[int]) -> bytes:
    """Byte ids, checked to be in ``range(256)``, as the bytes they stand for."""
    array = _as_id_array(ids)
    _check_ids(array, 256)
    return array.astype(np.uint8).tobytes()


# -- word ---------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+(?:['’]\w+)*|\s+|[^\w\s]")
"""A word (with inner apostrophes, as in "don't"), a run of whitespace, or one other character.

Every character of any text falls in exactly one match, so the tokens concatenate back to it."""

UNK = "<unk>"
"""The ``word`` tokenizer's replacement token (never produced by splitting text: '<' is alone)."""


def split_words(text: str) -> list[str]:
    """``text`` as word tokens: words, single punctuation marks and whitespace runs.

    >>> split_words("Hi, you  there!")
    ['Hi', ',', ' ', 'you', '  ', 'there', '!']
    """
    return _WORD.findall(text)


LARGE_WORD_VOCABULARY = 50_000
"""A word vocabulary kept whole beyond this size is warned about."""


class WordTokenizer(_FittedVocabulary):
    """Words, punctuation marks and whitespace runs as tokens, so ``decode(encode(s)) == s``.

    Args:
        max_vocab: keep only the most frequent tokens (ties broken by the token's text), so that
            the vocabulary, ``<unk>`` included, has at most this many; 0 keeps all.
        unknown: ``"error"``, ``"skip"`` or ``"replace"`` (with the ``<unk>`` token, id 0).

    Example::

        >>> tok = WordTokenizer().fit("the cat, the hat")
        >>> tok.decode(tok.encode("the hat, the cat"))
        'the hat, the cat'
    """

    kind = "word"

    def __init__(self, *, max_vocab: int = 0, unknown: UnknownPolicy = "error") -> None:
        opts = _options(WordOptions, "word", max_vocab=max_vocab, unknown=unknown)
        self.max_vocab: int = opts.max_vocab
        self.unknown: UnknownPolicy = opts.unknown
        self._set_vocab(None)

    def _set_vocab(self, vocab: Sequence[str] | None) -> None:
        self._vocab: tuple[str, ...] | None = None if vocab is None else tuple(vocab)
        self._index = {} if vocab is None else {t: i for i, t in enumerate(vocab)}

    def fit(self, text: str) -> WordTokenizer:
        """Learn the (most frequent) tokens of ``text``, sorted; ``<unk>`` first if replacing."""
        self._check_fit_text(text)
        return self._fit_counts(collections.Counter(split_words(text)))

    def fit_chunks(self, chunks: Iterable[str]) -> WordTokenizer:
        """:meth:`fit` on the concatenated ``chunks``, holding one chunk (and the counts) at a time.

        Any split of a text into chunks gives the same vocabulary as fitting the whole: the
        tokens at the end of a chunk that the next chunk could still extend (those within the
        last two characters, the most the splitting pattern looks ahead) are carried over.
        Encoding a text piece by piece is only equal to encoding it whole where the pieces end
        at token boundaries, e.g. just before whitespace that follows a non-whitespace character,
        which is where :func:`charseq.corpus.iter_text` ends its pieces.
        """
        counts: collections.Counter[str] = collections.Counter()
        tail = ""
        for chunk in chunks:
            _require_str(chunk, "fit_chunks")
            if not chunk:
                continue
            text = tail + chunk
            tokens = split_words(text)
            firm, held = len(tokens), 0
            while firm > 0 and held < 2:
                firm -= 1
                held += len(tokens[firm])
            del tokens[firm:]
            counts.update(tokens)
            tail = text[len(text) - held :]
        if tail:
            counts.update(split_words(tail))
        if not counts:
            raise TokenizerError(f"cannot fit the {self.kind!r} tokenizer on empty text")
        return self._fit_counts(counts)

    def _fit_counts(self, counts: collections.Counter[str]) -> WordTokenizer:
        """Keep the (most frequent) tokens of ``counts``, sorted; ``<unk>`` first if replacing."""
        reserved = [UNK] if self.unknown == "replace" else []
        room = self.max_vocab - len(reserved) if self.max_vocab else len(counts)
        if room < len(counts):
            if self.unknown == "error":
                raise TokenizerError(
                    f"max_vocab={self.max_vocab} keeps {max(room, 0)} of the {len(counts)} "
                    "distinct tokens of the text, and with unknown='error' the dropped ones "
                    "could not be encoded, not even in this text. Use unknown='replace' (map "
                    "them to <unk>) or unknown='skip', or a larger max_vocab (0 keeps all)."
                )
            ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
            kept = [token for token, _ in ranked[: max(room, 0)]]
        else:
            kept = list(counts)
            if not self.max_vocab and len(kept) > LARGE_WORD_VOCABULARY:
                warn(
                    f"the word tokenizer keeps all {len(kept):,} distinct tokens of the text; the "
                    "model's embedding and output layer grow with the vocabulary (and training "
                    "slows with it): set max_vocab (with unknown='replace' or 'skip') to keep "
                    "the most frequent"
                )
        self._set_vocab(reserved + sorted(kept))
        return self

    def encode(self, text: str) -> list[int]:
        self._check_encode_text(text)
        tokens = split_words(text)
        ids = list(map(self._index.get, tokens))
        if None not in ids:
            return ids  # type: ignore[return-value]
        if self.unknown == "error":
            raise self._unknown_error(text)
        if self.unknown == "skip":
            return [i for i in ids if i is not None]
        unk = self._index[UNK]
        return [unk if i is None else i for i in ids]

    def _unknown_error(self, text: str) -> UnknownCharacterError:
        unknown: dict[str, list[int]] = {}
        counts: collections.Counter[str] = collections.Counter()
        for match in _WORD.finditer(text):
            token = match.group()
            if token not in self._index:
                counts[token] += 1
                if len(unknown.setdefault(token, [])) < _MAX_POSITIONS:
                    unknown[token].append(match.start())
        remedy = (
            "Fit on a corpus that contains them, or build the tokenizer with unknown='skip' "
            "(drop them) or unknown='replace' (map them to <unk>), or use the 'char' or 'byte' "
            "tokenizer."
        )
        message = _unknown_message("token", unknown, counts, remedy)
        return UnknownCharacterError(message, unknown)

    def decode(self, ids: Iterable[int]) -> str:
        vocab = self._fitted_vocab()
        array = _as_id_array(ids)
        _check_ids(array, len(vocab))
        return "".join(map(vocab.__getitem__, array.tolist()))

    def state_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "max_vocab": self.max_vocab,
            "unknown": self.unknown,
            "vocab": list(self._fitted_vocab()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the vocabulary and the options saved by :meth:`state_dict`."""
        _check_state(state, self.kind)
        opts = _options(
            WordOptions,
            "word",
            max_vocab=state.get("max_vocab", self.max_vocab),
            unknown=state.get("unknown", self.unknown),
        )
        vocab = _check_vocab(state.get("vocab"), self.kind)
        if opts.unknown == "replace" and UNK not in vocab:
            raise TokenizerError(f"unknown='replace' needs {UNK!r} in the vocabulary")
        self.max_vocab, self.unknown = opts.max_vocab, opts.unknown
        self._set_vocab(vocab)

    def __repr__(self) -> str:
        size = len(self._vocab) if self._vocab is not None else "unfitted"
        return (
            f"WordTokenizer(max_vocab={self.max_vocab}, unknown={self.unknown!r}, "
            f"vocab_size={size})"
        )


@hookimpl
def charseq_register_tokenizers(registry: Registrar) -> None:
    registry.add(
        "char",
        CharTokenizer,
        options=CharOptions,
        help="one id per Unicode character of the corpus (char-rnn)",
    )
    registry.add(
        "byte",
        ByteTokenizer,
        options=NoOptions,
        help="the UTF-8 bytes of the text: 256 fixed ids, any text",
    )
    registry.add(
        "word",
        WordTokenizer,
        options=WordOptions,
        help="words, punctuation marks and whitespace runs, fitted on the corpus",
    )
