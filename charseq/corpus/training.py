"""Reading a pipeline's training corpus: the text or files it trains on, or the corpus a
checkpoint was trained on, as ids, splits and the record a checkpoint keeps of it.

Reading has no side effects on the caller: an unfitted tokenizer is fitted as a copy, returned in
the :class:`CorpusRead` for the caller to adopt.
"""

from __future__ import annotations

import copy
import hashlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from charseq.checkpoint import CheckpointError
from charseq.corpus import (
    STDIN,
    EmptyCorpusError,
    Splits,
    find_sources,
    ids_dtype,
    prepare_corpus,
    split_ids,
)
from charseq.corpus_record import from_run_cache, recorded_corpus, unread_sources
from charseq.errors import CharseqError, UnknownCharacterError
from charseq.interfaces import Tokenizer
from charseq.spec import TrainSpec

Files = str | Path | Sequence[str | Path]
"""Corpus files: a path, or several (files, directories, ``"-"`` for standard input)."""


@attrs.frozen
class CorpusRead:
    """A corpus read for training or evaluation.

    Attributes:
        ids: the whole corpus as token ids.
        splits: its train / val / test splits (``None`` when not asked to split).
        record: what a checkpoint records about the corpus (``kind``, ``hash``; for files also
            ``sources``, ``include``, ``encoding``, ``normalize``).
        tokenizer: the tokenizer that encoded it, fitted (a fitted copy of an unfitted one).
    """

    ids: np.ndarray
    splits: Splits | None
    record: dict[str, Any]
    tokenizer: Tokenizer


def read_corpus(
    tokenizer: Tokenizer,
    train: TrainSpec,
    *,
    text: str | None = None,
    files: Files | None = None,
    include: Sequence[str] = ("*",),
    encoding: str = "utf-8",
    normalize: str | None = None,
    cache: Path,
    split: bool = True,
    progress: bool | None = False,
) -> CorpusRead:
    """Read ``text`` or ``files`` (one of them), fit a copy of ``tokenizer`` on it if it has no
    vocabulary, encode it and split it by ``train.val_fraction`` and ``train.test_fraction``.

    Files are streamed into a memory-mapped id cache under ``cache``
    (:func:`~charseq.corpus.prepare_corpus`; ``progress`` shows bars for a large corpus).
    Without ``split`` the splits are ``None``: a text too small to split can still be
    evaluated whole. A corpus with tokens outside a vocabulary already fitted raises the
    tokenizer's ``UnknownCharacterError``, with a note saying where that vocabulary came from.
    """
    try:
        return _read(
            tokenizer, train, text=text, files=files, include=include, encoding=encoding,
            normalize=normalize, cache=cache, split=split, progress=progress,
        )  # fmt: skip
    except UnknownCharacterError as error:
        if tokenizer.is_fitted:
            error.add_note(_FIXED_VOCABULARY)
        raise


def _read(
    tokenizer: Tokenizer,
    train: TrainSpec,
    *,
    text: str | None,
    files: Files | None,
    include: Sequence[str],
    encoding: str,
    normalize: str | None,
    cache: Path,
    split: bool,
    progress: bool | None,
) -> CorpusRead:
    """:func:`read_corpus` without the note (:func:`reread_corpus` reads a recorded corpus)."""
    if (text is None) == (files is None):
        raise CharseqError("fit needs a corpus: pass text=... or files=... (one of them)")
    if not tokenizer.is_fitted:
        tokenizer = copy.deepcopy(tokenizer)  # fitted below; the caller's stays as it was
    if text is not None:
        if not isinstance(text, str):
            raise CharseqError(
                f"text must be a str, got {type(text).__name__}; for paths use files=..."
            )
        if not tokenizer.is_fitted:
            tokenizer.fit(text)
        ids = np.asarray(tokenizer.encode_array(text), dtype=ids_dtype(tokenizer.vocab_size))
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        splits = split_ids(ids, train.val_fraction, train.test_fraction) if split else None
        return CorpusRead(ids, splits, {"kind": "text", "hash": digest}, tokenizer)
    paths = [files] if isinstance(files, str | Path) else list(files)
    sources = find_sources(paths, tuple(include), encoding=encoding)
    corpus = prepare_corpus(
        sources, tokenizer, cache, encoding=encoding, normalize=normalize, progress=progress
    )
    record = {
        "kind": "files",
        "sources": [_absolute(source) for source in sources],  # readable from any directory
        "include": list(include),
        "encoding": encoding,
        "normalize": normalize,
        "hash": corpus.hash,
    }
    splits = corpus.split(train.val_fraction, train.test_fraction) if split else None
    return CorpusRead(corpus.ids, splits, record, tokenizer)


def reread_corpus(
    tokenizer: Tokenizer,
    train: TrainSpec,
    path: Path,
    manifest: dict[str, Any],
    *,
    text: str | None = None,
    files: Files | None = None,
    cache: Path,
    same: bool,
    split: bool = True,
    progress: bool | None = False,
) -> CorpusRead:
    """The corpus the checkpoint at ``path`` was trained on: from ``text`` / ``files`` if given,
    else from the run's cache (``cache``), never from the paths the manifest names (see
    :mod:`charseq.corpus_record`; only standard input, which the user pipes, is read again).

    With ``same``, it must be that very text (same hash). ``split`` and ``progress`` are as for
    :func:`read_corpus`.
    """
    recorded = recorded_corpus(path, manifest)
    if text is None and files is None:
        if recorded.get("kind") != "files":
            what = (
                "was trained on text given in memory, not on files it can name"
                if recorded.get("kind") == "text"
                else "records no corpus (a weights-only export, written by Pipeline.save)"
            )
            raise CheckpointError(f"{path} {what}: {_GIVE_CORPUS}", argument="files")
        corpus = from_run_cache(cache, tokenizer, recorded, manifest)
        if corpus is not None:
            splits = corpus.split(train.val_fraction, train.test_fraction) if split else None
            record = {k: recorded.get(k) for k in _RECORDED}
            return CorpusRead(corpus.ids, splits, record, tokenizer)
        files = recorded["sources"]
        if files != [STDIN]:
            raise unread_sources(path, files)
        if sys.stdin is None or sys.stdin.isatty():
            raise CheckpointError(f"{path} {_STDIN_RUN}", argument="files")
    try:
        read = _read(
            tokenizer,
            train,
            text=text,
            files=files,
            include=recorded.get("include") or ("*",),
            encoding=recorded.get("encoding") or "utf-8",
            normalize=recorded.get("normalize"),
            cache=cache,
            split=split,
            progress=progress,
        )
    except EmptyCorpusError as error:
        if text is None and files is not None and STDIN in files:
            raise CheckpointError(f"{error}; {path} {_STDIN_RUN}", argument="files") from None
        raise
    if same and read.record["hash"] != recorded.get("hash"):
        raise CheckpointError(
            f"the corpus changed since {path} was written (its sha256 differs), so its "
            "splits and data cursor no longer line up"
        )
    return read


def _absolute(source: str | Path) -> str:
    """A corpus source as a checkpoint records it: an absolute path, or ``"-"`` (stdin)."""
    return STDIN if os.fspath(source) == STDIN else str(Path(source).resolve())


_RECORDED = ("kind", "sources", "include", "encoding", "normalize", "hash")
"""What a checkpoint records about a corpus of files (besides the splits' bounds)."""

_GIVE_CORPUS = "give the corpus as files=... (or, to Pipeline.resume, as text=...)"
_STDIN_RUN = (
    "was trained on standard input: pipe the same text in again, or give the corpus as files=..."
)
_FIXED_VOCABULARY = (
    "this pipeline's vocabulary was fixed before this fit (by an earlier fit, or by the "
    "checkpoint it was loaded from), and the corpus has tokens outside it; a new "
    "Pipeline.from_spec(...) fits a vocabulary of its own."
)
