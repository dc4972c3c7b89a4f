"""Corpora: finding the text, reading it as a stream, and encoding it once into a cached id array.

A corpus is one or more *sources*: files, directories (searched recursively) or ``"-"``
(standard input). :func:`find_sources` expands paths into files; :func:`iter_text` reads them as
one concatenated text, a piece at a time; :func:`prepare_corpus` encodes that text with a
tokenizer into a compact array on disk (``uint8``, ``uint16`` or ``int32``, by vocabulary size),
memory-mapped and cached by content hash, so a corpus far larger than memory trains in bounded
memory; :meth:`EncodedCorpus.split` cuts it into contiguous train / val / test parts.

Memory: reading and encoding hold one piece of about ``chunk_chars`` characters at a time (with
its decoded copies and the tokenizer's per-piece work: roughly 40 bytes per character for the
``char`` tokenizer, so about 10 MB at the default :data:`CHUNK_CHARS`), the tokenizer's
vocabulary (and, while a ``word`` tokenizer is fitted, one count per distinct token), and O(1)
more; never the whole corpus. The ids themselves stay on disk and are paged in by the operating
system as batches read them.

char-rnn was famously trained on the Linux kernel's source. charseq's download-free corpus is
the source code of Python's own standard library (:func:`python_source_files`), read in a fixed
order, so training runs on a fresh machine with no download.
"""

from __future__ import annotations

from charseq.corpus.encoded import EncodedCorpus, cached_corpus, ids_dtype, prepare_corpus
from charseq.corpus.errors import (
    BinaryFileError,
    CorpusDecodeError,
    CorpusError,
    CorpusTooSmallError,
    EmptyCorpusError,
    NoTextFilesError,
    SourceNotFoundError,
)
from charseq.corpus.sources import (
    BINARY_PROBE,
    STDIN,
    STDLIB_MODULES,
    find_sources,
    python_source_corpus,
    python_source_files,
)
from charseq.corpus.splits import Splits, split_ids
from charseq.corpus.text import CHUNK_CHARS, iter_text, read_text

__all__ = [
    "BINARY_PROBE",
    "CHUNK_CHARS",
    "STDIN",
    "STDLIB_MODULES",
    "BinaryFileError",
    "CorpusDecodeError",
    "CorpusError",
    "CorpusTooSmallError",
    "EmptyCorpusError",
    "EncodedCorpus",
    "NoTextFilesError",
    "SourceNotFoundError",
    "Splits",
    "cached_corpus",
    "find_sources",
    "ids_dtype",
    "iter_text",
    "prepare_corpus",
    "python_source_corpus",
    "python_source_files",
    "read_text",
    "split_ids",
]
