"""The ``word`` tokenizer: words, punctuation marks and whitespace runs, fitted on the corpus."""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from charseq.builtins import tokenizers as package
from charseq.builtins.tokenizers._vocab import (
    MAX_POSITIONS,
    UNKNOWN_HELP,
    FittedVocabulary,
    checked_options,
    require_str,
    unknown_message,
    unknown_policy,
)
from charseq.errors import TokenizerError, UnknownCharacterError, warn
from charseq.interfaces import UnknownPolicy
from charseq.options import option


@attrs.frozen(kw_only=True)
class WordOptions:
    """Options of the ``word`` tokenizer."""

    max_vocab: int = option(
        0, help="keep the most frequent tokens, <unk> included (0: keep all)", min=0
    )
    unknown: UnknownPolicy = option("error", help=UNKNOWN_HELP, validator=unknown_policy)


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


class WordTokenizer(FittedVocabulary):
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
    options_class = WordOptions

    def __init__(self, *, max_vocab: int = 0, unknown: UnknownPolicy = "error") -> None:
        opts = checked_options(WordOptions, "word", max_vocab=max_vocab, unknown=unknown)
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
            require_str(chunk, "fit_chunks")
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
            if not self.max_vocab and len(kept) > package.LARGE_WORD_VOCABULARY:
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
                if len(unknown.setdefault(token, [])) < MAX_POSITIONS:
                    unknown[token].append(match.start())
        remedy = (
            "Fit on a corpus that contains them, or build the tokenizer with "
            "tokenizer.unknown='skip' (drop them) or tokenizer.unknown='replace' (map them to "
            "<unk>), or use the 'char' or 'byte' tokenizer."
        )
        message = unknown_message("token", unknown, counts, remedy)
        return UnknownCharacterError(message, unknown)

    def decode(self, ids: Iterable[int]) -> str:
        vocab = self._fitted_vocab()
        return "".join(map(vocab.__getitem__, self._checked_ids(ids).tolist()))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the vocabulary and the options saved by :meth:`state_dict`."""
        opts, vocab = self._read_state(state)
        if opts.unknown == "replace" and UNK not in vocab:
            raise TokenizerError(f"unknown='replace' needs {UNK!r} in the vocabulary")
        self._set_options(opts)
        self._set_vocab(vocab)

    def __repr__(self) -> str:
        size = len(self._vocab) if self._vocab is not None else "unfitted"
        return (
            f"WordTokenizer(max_vocab={self.max_vocab}, unknown={self.unknown!r}, "
            f"vocab_size={size})"
        )
