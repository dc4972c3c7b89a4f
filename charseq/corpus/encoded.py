"""Encoding a corpus once into a cached, memory-mapped id array (cut into parts by
:mod:`charseq.corpus.splits`)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from charseq.corpus.arguments import (
    Normalization,
    check_chunk,
    check_encoding,
    check_normalize,
)
from charseq.corpus.errors import CorpusError, EmptyCorpusError
from charseq.corpus.sources import STDIN, Source, find_sources
from charseq.corpus.splits import Splits, split_ids
from charseq.corpus.text import _READ_BLOCK, CHUNK_CHARS, _stream_text
from charseq.errors import CharseqError
from charseq.files import atomic_write
from charseq.interfaces import Tokenizer
from charseq.progress import CORPUS_PROGRESS_BYTES, phase

_CACHE_FORMAT = 1


def ids_dtype(vocab_size: int) -> np.dtype:
    """The smallest dtype for ids in ``range(vocab_size)``: uint8, uint16 or int32."""
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


@attrs.frozen(eq=False)
class EncodedCorpus:
    """A corpus encoded to ids, memory-mapped read-only from the cache.

    Attributes:
        ids: the ids, a read-only :class:`numpy.memmap` of dtype :func:`ids_dtype`.
        hash: SHA-256 (hex) of the corpus's raw bytes, all sources concatenated in order (for a
            single file, what ``sha256sum`` prints).
        path: the cached ``.ids`` file.
        key: the cache key (hash of the content, the sizes of the sources, the encoding, the
            normalisation and the tokenizer's class and fitted state).
        vocab_size: the tokenizer's vocabulary size.
        sources: the names of the sources, in order.
        reused: whether the ids came from the cache rather than from encoding now.
    """

    ids: np.ndarray
    hash: str
    path: Path
    key: str
    vocab_size: int
    sources: tuple[str, ...] = ()
    reused: bool = False

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def split(self, val: float = 0.05, test: float = 0.05) -> Splits:
        """Contiguous parts: the first ``1 - val - test`` for training, then val, then test.

        Boundaries are ``floor(n * (1 - val - test))`` and ``floor(n * (1 - test))``, with the
        fractions taken as the decimals they are written as (so ``val=0.1, test=0`` gives
        nanoGPT's ``int(n * 0.9)`` split). A part with a positive fraction gets at least 2
        tokens (one input and its target), taken from training, with a warning.

        Raises:
            CorpusError: a fraction outside [0, 1), or ``val + test >= 1``.
            CorpusTooSmallError: too few tokens for these parts, with the minimum needed.
        """
        return split_ids(self.ids, val=val, test=test)


def prepare_corpus(
    sources: Source | Iterable[Source],
    tokenizer: Tokenizer,
    cache_dir: str | os.PathLike[str],
    *,
    encoding: str = "utf-8",
    normalize: Normalization | None = None,
    errors: str | None = None,
    chunk_chars: int = CHUNK_CHARS,
    progress: bool | None = False,
    progress_min_bytes: int | None = None,
) -> EncodedCorpus:
    """Encode ``sources`` with ``tokenizer`` into a memory-mapped id array cached in ``cache_dir``.

    Pass 1 streams the sources, hashing their raw bytes (SHA-256) and, if the tokenizer is not
    fitted, fitting it with :meth:`~charseq.interfaces.Tokenizer.fit_chunks` on the pieces of
    :func:`iter_text`. The cache key is a hash of that content hash, the sources' sizes, the
    encoding, the normalisation and the tokenizer's class and fitted state, so a changed file or
    a different vocabulary never reuses old ids. If ``cache_dir/<key>.ids`` and its JSON sidecar
    ``<key>.json`` exist and agree, they are used as they are; otherwise pass 2 encodes the text
    piece by piece into a temporary file, renamed into place when complete. Standard input
    (``"-"``) is first spooled to a temporary file in ``cache_dir`` so it can be read twice.

    Memory: one piece of ``chunk_chars`` characters with its encoding (about 40 bytes per
    character for the ``char`` tokenizer: ~10 MB at the default), the tokenizer's vocabulary
    (plus a count per distinct token while fitting ``word``), and O(1) more, whatever the corpus
    size; the ids stay on disk.

    Args:
        sources: files and ``"-"``, as :func:`find_sources` returns them (a directory here is
            expanded by :func:`find_sources` with its default ``include``).
        tokenizer: fitted or not; fitted here on the whole corpus if not.
        cache_dir: where the ``.ids`` and ``.json`` files live (created if missing).
        encoding: the codec of the files (UTF-8 by default).
        normalize: ``"NFC"``, ``"NFKC"`` or ``None``.
        errors: the codec's error handler; by default ``"surrogateescape"`` for the ``byte``
            tokenizer (raw bytes pass through unchanged) and ``"strict"`` for the others.
        chunk_chars: characters per piece (see :func:`iter_text`).
        progress: show a bar on standard error while each pass reads a corpus of at least
            ``progress_min_bytes``: ``True``, ``False``, or ``None`` for "when standard error is
            a terminal" (see :mod:`charseq.progress`).
        progress_min_bytes: the smallest corpus that shows a bar (default
            :data:`~charseq.progress.CORPUS_PROGRESS_BYTES`).

    Raises:
        EmptyCorpusError: no bytes, or no token after encoding.
        BinaryFileError, CorpusDecodeError, SourceNotFoundError: see :func:`iter_text`.
    """
    codec = check_encoding(encoding)
    form = check_normalize(normalize)
    chunk_chars = check_chunk(chunk_chars)
    errors = _errors(tokenizer, errors)
    sources = find_sources(sources, encoding=codec)
    cache = Path(cache_dir)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CorpusError(f"{cache}: cannot create the corpus cache: {error}") from None
    spool: Path | None = None
    try:
        items: list[tuple[Source, str]] = []
        for source in sources:
            if os.fspath(source) == STDIN:
                if spool is not None:
                    raise CorpusError("standard input ('-') can be named only once")
                spool = _spool_stdin(cache)
                items.append((spool, "<stdin>"))
            else:
                items.append((Path(source), str(source)))
        sizes = [os.path.getsize(path) for path, _ in items]
        names = tuple(name for _, name in items)
        if sum(sizes) == 0:
            raise EmptyCorpusError(
                f"the corpus is empty: {_list_names(names)} "
                f"{'has' if len(names) == 1 else 'have'} no text"
            )

        minimum = CORPUS_PROGRESS_BYTES if progress_min_bytes is None else progress_min_bytes

        def bar(desc: str) -> Any:  # a bar over the corpus's bytes (or none: see phase)
            return phase(desc, sum(sizes), unit="B", show=progress, minimum=minimum)

        hasher = hashlib.sha256()
        if tokenizer.is_fitted:
            with bar("reading the corpus") as advance:
                for path, _ in items:
                    with open(path, "rb") as file:
                        while block := file.read(_READ_BLOCK):
                            hasher.update(block)
                            advance(len(block))
        else:
            with bar("fitting the tokenizer") as advance:

                def hash_block(block: bytes) -> None:
                    hasher.update(block)
                    advance(len(block))

                pieces = _stream_text(items, codec, form, chunk_chars, errors, hash_block)
                tokenizer.fit_chunks(pieces)
                for _ in pieces:  # make sure every byte was hashed, whatever fit_chunks did
                    pass
        content = hasher.hexdigest()

        vocab_size = int(tokenizer.vocab_size)
        dtype = ids_dtype(vocab_size)
        key = _cache_key(content, sizes, codec, errors, form, tokenizer, tokenizer.state_dict())
        ids_path, meta_path = cache / f"{key}.ids", cache / f"{key}.json"

        tokens = _cached_tokens(ids_path, meta_path, key, dtype)
        reused = tokens is not None
        if tokens is None:
            with bar("encoding the corpus") as advance:
                tokens = _encode_to_file(
                    items, tokenizer, dtype, ids_path, codec, form, chunk_chars, errors, advance
                )
            if tokens == 0:
                ids_path.unlink(missing_ok=True)
                raise EmptyCorpusError(
                    f"no token is left after encoding {_list_names(names)} (the tokenizer "
                    "dropped every character); check the tokenizer's unknown policy"
                )
            meta = {
                "format": _CACHE_FORMAT,
                "key": key,
                "hash": content,
                "tokens": tokens,
                "dtype": dtype.name,
                "vocab_size": vocab_size,
                "encoding": codec,
                "errors": errors,
                "normalize": form,
                "sources": list(names),
                "sizes": sizes,
                "tokenizer": _class_name(tokenizer),
            }
            with atomic_write(meta_path) as out:
                out.write(json.dumps(meta, indent=1).encode("utf-8"))
    finally:
        if spool is not None:
            spool.unlink(missing_ok=True)
    ids = np.memmap(ids_path, dtype=dtype, mode="r", shape=(tokens,))
    return EncodedCorpus(
        ids=ids,
        hash=content,
        path=ids_path,
        key=key,
        vocab_size=vocab_size,
        sources=names,
        reused=reused,
    )


def cached_corpus(
    cache_dir: str | os.PathLike[str],
    tokenizer: Tokenizer,
    content_hash: str,
    *,
    encoding: str = "utf-8",
    normalize: Normalization | None = None,
    errors: str | None = None,
    state: Any = None,
) -> EncodedCorpus | None:
    """The corpus whose raw bytes hash to ``content_hash``, as :func:`prepare_corpus` encoded
    it with ``tokenizer`` into ``cache_dir``, found without reading its sources; ``None`` if the
    cache has no complete entry for it.

    ``state`` is the tokenizer's state the entry was keyed with (default: its state now), so
    that a copy with another unknown-character policy finds the ids of the original. Only plain
    files directly in ``cache_dir``, itself no symbolic link, are used.

    Raises:
        CorpusError: the entry holds ids outside the tokenizer's vocabulary (a tampered cache).
    """
    cache = Path(cache_dir)
    if cache.is_symlink() or not cache.is_dir():
        return None
    codec, form, errors = (
        check_encoding(encoding),
        check_normalize(normalize),
        _errors(tokenizer, errors),
    )
    state = tokenizer.state_dict() if state is None else state
    vocab_size = int(tokenizer.vocab_size)
    dtype = ids_dtype(vocab_size)
    for meta_path in sorted(cache.glob("*.json")):
        meta = _sidecar(meta_path)
        if meta is None or meta.get("hash") != content_hash:
            continue
        sizes = meta.get("sizes")
        if not isinstance(sizes, list) or not all(type(size) is int for size in sizes):
            continue
        key = _cache_key(content_hash, sizes, codec, errors, form, tokenizer, state)
        ids_path = cache / f"{key}.ids"
        if meta_path.name != f"{key}.json" or ids_path.is_symlink():
            continue
        tokens = _cached_tokens(ids_path, meta_path, key, dtype)
        if tokens is None:
            continue
        ids = np.memmap(ids_path, dtype=dtype, mode="r", shape=(tokens,))
        if int(ids.max()) >= vocab_size or int(ids.min()) < 0:
            raise CorpusError(
                f"{ids_path}: the corpus cache holds ids outside the tokenizer's vocabulary of "
                f"{vocab_size} (altered since it was written): delete it and give the corpus"
            )
        names = meta.get("sources")
        names = (
            tuple(names)
            if isinstance(names, list) and all(isinstance(n, str) for n in names)
            else ()
        )
        return EncodedCorpus(
            ids=ids,
            hash=content_hash,
            path=ids_path,
            key=key,
            vocab_size=vocab_size,
            sources=names,
            reused=True,
        )
    return None


def _errors(tokenizer: Tokenizer, errors: str | None) -> str:
    """The codec error handler: as given, else raw bytes through for ``byte``, else strict."""
    if errors is not None:
        return errors
    return "surrogateescape" if getattr(tokenizer, "kind", None) == "byte" else "strict"


def _class_name(tokenizer: Tokenizer) -> str:
    return f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}"


def _cache_key(
    content: str,
    sizes: list[int],
    codec: str,
    errors: str,
    form: str | None,
    tokenizer: Tokenizer,
    state: Any,
) -> str:
    """The cache key of a corpus: its content, sizes and reading, the tokenizer and its state."""
    material = {
        "format": _CACHE_FORMAT,
        "content": content,
        "sizes": sizes,
        "encoding": codec,
        "errors": errors,
        "normalize": form,
        "tokenizer": _class_name(tokenizer),
        "state": state,
    }
    blob = json.dumps(material, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def _sidecar(path: Path) -> dict[str, Any] | None:
    """A cache entry's JSON description, or ``None`` if it is a link or not a JSON table."""
    if path.is_symlink():
        return None
    try:
        meta = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return meta if isinstance(meta, dict) else None


def _list_names(names: Sequence[str]) -> str:
    if len(names) <= 3:
        return ", ".join(names)
    return f"{', '.join(names[:3])} and {len(names) - 3} more"


def _spool_stdin(cache: Path) -> Path:
    """Copy standard input to a temporary file in ``cache`` (so it can be read twice)."""
    handle, name = tempfile.mkstemp(prefix=".stdin-", suffix=".tmp", dir=cache)
    with os.fdopen(handle, "wb") as out:
        stream = getattr(sys.stdin, "buffer", None)
        if stream is not None:
            shutil.copyfileobj(stream, out, _READ_BLOCK)
        else:  # a text-only stdin: store it as UTF-8
            while text := sys.stdin.read(_READ_BLOCK):
                out.write(text.encode("utf-8", "surrogateescape"))
    return Path(name)


def _cached_tokens(ids_path: Path, meta_path: Path, key: str, dtype: np.dtype) -> int | None:
    """The token count of a complete cache entry for ``key``, or ``None`` if there is none."""
    meta = _sidecar(meta_path)
    if meta is None:
        return None
    try:
        tokens = int(meta["tokens"])
        if meta.get("key") != key or meta.get("dtype") != dtype.name or tokens <= 0:
            return None
        if ids_path.stat().st_size != tokens * dtype.itemsize:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return tokens


def _encode_to_file(
    items: Sequence[tuple[Source, str]],
    tokenizer: Tokenizer,
    dtype: np.dtype,
    ids_path: Path,
    codec: str,
    form: str | None,
    chunk_chars: int,
    errors: str,
    advance: Callable[[int], None],
) -> int:
    """Pass 2: encode piece by piece into a temporary file, then rename it to ``ids_path``;
    ``advance`` is told how many bytes of the corpus each read took."""

    def on_bytes(block: bytes) -> None:
        advance(len(block))

    tokens = 0
    with atomic_write(ids_path) as out:
        start = 0  # characters of the (normalised) text before this piece
        for piece in _stream_text(items, codec, form, chunk_chars, errors, on_bytes):
            try:
                ids = np.asarray(tokenizer.encode_array(piece))
            except CharseqError as error:
                raise _in_corpus(error, items, start) from None
            ids.astype(dtype, copy=False).tofile(out)
            tokens += ids.size
            start += len(piece)
    return tokens


def _in_corpus(error: CharseqError, items: Sequence[tuple[Source, str]], start: int) -> Exception:
    """``error`` itself (same class and attributes), its message saying where in the corpus.

    The message is rewritten, not given a note (``add_note``): its positions count from
    ``start``, so they mean nothing without this prefix, and a caller may rebuild the message
    from ``str(error)`` (``charseq.evaluate`` adds what to do when evaluating), which would
    drop a note."""
    where = (
        f"while encoding {_list_names([name for _, name in items])}, in the text from "
        f"character {start} on (positions below count from there): "
    )
    error.args = (where + str(error), *error.args[1:])
    return error
