"""The built-in tokenizers: ``char`` (code points), ``byte`` (UTF-8 bytes) and ``word``.

``char`` and ``word`` learn a sorted, deterministic vocabulary with :meth:`fit`; ``byte`` has a
fixed vocabulary of 256 ids and covers any text. Text outside a fitted vocabulary follows the
``unknown`` policy: ``"error"`` (the default) raises :class:`UnknownCharacterError` naming what
is missing and where, ``"skip"`` drops it, ``"replace"`` maps it to a replacement token.

Encoding is vectorised (NumPy over UTF-32 code points for ``char``, one regular expression and
a dict lookup for ``word``), so a corpus of a few megabytes encodes in well under a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from charseq.builtins.tokenizers._vocab import NotFittedError
from charseq.builtins.tokenizers.byte import ByteTokenizer
from charseq.builtins.tokenizers.char import CharOptions, CharTokenizer
from charseq.builtins.tokenizers.word import (
    UNK,
    WordOptions,
    WordTokenizer,
    split_words,
)
from charseq.errors import TokenizerError, UnknownCharacterError
from charseq.hookspecs import hookimpl
from charseq.interfaces import UnknownPolicy  # the core's, re-exported where it always was
from charseq.options import NoOptions

if TYPE_CHECKING:
    from charseq.registry import Registrar

LARGE_WORD_VOCABULARY = 50_000
"""A word vocabulary kept whole beyond this size is warned about (the ``word`` tokenizer reads it
here when it fits, so setting it here takes effect)."""

__all__ = [
    "LARGE_WORD_VOCABULARY",
    "UNK",
    "ByteTokenizer",
    "CharOptions",
    "CharTokenizer",
    "NotFittedError",
    "TokenizerError",
    "UnknownCharacterError",
    "UnknownPolicy",
    "WordOptions",
    "WordTokenizer",
    "split_words",
]


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
