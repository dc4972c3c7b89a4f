"""The ``char`` tokenizer: one id per Unicode code point seen in the corpus (char-rnn)."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import numpy as np

from charseq.builtins.tokenizers._vocab import (
    MAX_POSITIONS,
    UNKNOWN_HELP,
    FittedVocabulary,
    checked_options,
    require_str,
    unknown_message,
    unknown_policy,
)
from charseq.checks import describe_char
from charseq.errors import TokenizerError, UnknownCharacterError
from charseq.interfaces import UnknownPolicy
from charseq.options import OptionError, option

_TABLE_LIMIT = 1 << 19  # code points below this get a dense code point -> id table (4 MiB)


def _one_character(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str) or len(value) != 1:
        raise OptionError(attribute.name, f"must be a single character, got {value!r}")


@attrs.frozen(kw_only=True)
class CharOptions:
    """Options of the ``char`` tokenizer."""

    unknown: UnknownPolicy = option("error", help=UNKNOWN_HELP, validator=unknown_policy)
    replacement: str = option(
        "\ufffd",
        help="the character unknown ones become with unknown='replace' (added to the vocabulary)",
        validator=_one_character,
    )


def _code_points(text: str) -> np.ndarray:
    """The code points of ``text`` (lone surrogates included) as a uint32 array."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def _from_code_points(points: np.ndarray) -> str:
    return points.astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")


class CharTokenizer(FittedVocabulary):
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
    options_class = CharOptions

    def __init__(self, *, unknown: UnknownPolicy = "error", replacement: str = "\ufffd") -> None:
        opts = checked_options(CharOptions, "char", unknown=unknown, replacement=replacement)
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
            require_str(chunk, "fit_chunks")
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
            if len(unknown.setdefault(char, [])) < MAX_POSITIONS:
                unknown[char].append(position)
        remedy = (
            "Fit on a corpus that contains them, or build the tokenizer with "
            "tokenizer.unknown='skip' (drop them) or tokenizer.unknown='replace' (map them to "
            f"{describe_char(self.replacement)}), or use the 'byte' tokenizer, which covers "
            "any text."
        )
        message = unknown_message("character", unknown, counts, remedy)
        return UnknownCharacterError(message, unknown)

    def decode(self, ids: Iterable[int]) -> str:
        return _from_code_points(self._points[self._checked_ids(ids)])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the vocabulary and the unknown policy saved by :meth:`state_dict`."""
        opts, vocab = self._read_state(state)
        if any(len(c) != 1 for c in vocab):
            raise TokenizerError("a 'char' vocabulary holds single characters")
        if opts.unknown == "replace" and opts.replacement not in vocab:
            raise TokenizerError(
                f"the replacement {describe_char(opts.replacement)} is not in the vocabulary"
            )
        self._set_options(opts)
        self._set_vocab(vocab)

    def __repr__(self) -> str:
        size = len(self._vocab) if self._vocab is not None else "unfitted"
        return f"CharTokenizer(unknown={self.unknown!r}, vocab_size={size})"
