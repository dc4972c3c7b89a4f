"""Checking the arguments that say how a corpus is read: encoding, normalisation, piece size."""

from __future__ import annotations

import codecs
from typing import Literal, get_args

from charseq.checks import require_int
from charseq.corpus.errors import CorpusError

Normalization = Literal["NFC", "NFKC"]
"""The Unicode normal forms a corpus may be read in (``normalize=``); a checkpoint records
the one its corpus was read in, and primes and scored texts are normalised the same way."""

NORMALIZATIONS: tuple[Normalization, ...] = get_args(Normalization)
"""The :data:`Normalization` values, in order: ``("NFC", "NFKC")``."""


def check_encoding(encoding: str) -> str:
    try:
        info = codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise CorpusError(
            f"unknown encoding {encoding!r}; pass a Python codec name such as 'utf-8', "
            "'latin-1' or 'utf-16'"
        ) from None
    if not getattr(info, "_is_text_encoding", True):  # rot13, base64, zlib: not bytes -> text
        raise CorpusError(
            f"{encoding!r} is not a text encoding (it turns bytes into bytes or text into text); "
            "pass one such as 'utf-8', 'latin-1' or 'utf-16'"
        )
    return info.name


def check_normalize(normalize: str | None) -> str | None:
    if normalize is None:
        return None
    form = str(normalize).upper()
    if form not in NORMALIZATIONS:
        raise CorpusError(f"normalize must be None, 'NFC' or 'NFKC', got {normalize!r}")
    return form


def check_chunk(chunk_chars: int) -> int:
    return require_int(chunk_chars, "chunk_chars", min=1, error=CorpusError)


def nul_means_binary(codec: str, errors: str) -> bool:
    """Whether a NUL byte makes a file 'binary' for this codec and error handler."""
    return errors == "strict" and not codec.startswith(("utf-16", "utf-32"))
