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

import codecs
import hashlib
import json
import math
import os
import shutil
import sys
import sysconfig
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from fnmatch import fnmatchcase
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import attrs
import numpy as np

from charseq.errors import CharseqError, warn
from charseq.files import atomic_write
from charseq.interfaces import Tokenizer

__all__ = [
    "CHUNK_CHARS",
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
    "find_sources",
    "ids_dtype",
    "iter_text",
    "prepare_corpus",
    "python_source_corpus",
    "python_source_files",
    "read_text",
    "split_ids",
]

Normalization = Literal["NFC", "NFKC"]
Source = Path | str
"""A file path, or ``"-"`` for standard input."""

STDIN = "-"
CHUNK_CHARS = 1 << 18
"""Characters per piece read, fitted and encoded at a time (256 Ki)."""

BINARY_PROBE = 8000
"""A NUL byte in a file's first this many bytes marks it as binary (git's rule)."""

_MAX_CARRY_CHUNKS = 16  # a stretch with no whitespace is cut after this many chunks
_READ_BLOCK = 1 << 20  # bytes read at a time when only hashing or copying
_CACHE_FORMAT = 1
_NORMALIZATIONS = ("NFC", "NFKC")

STDLIB_MODULES = (
    "textwrap.py",
    "string.py",
    "shlex.py",
    "fnmatch.py",
    "glob.py",
    "difflib.py",
    "calendar.py",
    "heapq.py",
    "bisect.py",
    "queue.py",
    "sched.py",
    "contextlib.py",
    "functools.py",
    "copy.py",
    "random.py",
    "statistics.py",
    "fractions.py",
    "decimal.py",
)
"""Standard-library modules read, in this order, by :func:`python_source_files`."""


# -- errors -------------------------------------------------------------------------------------


class CorpusError(CharseqError, ValueError):
    """The corpus cannot be read, encoded or split as asked."""


class SourceNotFoundError(CorpusError):
    """A corpus path does not exist."""


class NoTextFilesError(CorpusError):
    """A directory (or the list of sources) holds no text file to read."""


class BinaryFileError(CorpusError):
    """A file looks binary (a NUL byte near its start).

    Attributes:
        path: the file, as named in the message.
        offset: the byte offset of the first NUL byte.
    """

    def __init__(self, message: str, path: str, offset: int) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset


class CorpusDecodeError(CorpusError):
    """A file is not valid text in the given encoding.

    Attributes:
        path: the file, as named in the message.
        offset: the absolute byte offset, in that file, of the first undecodable byte.
        encoding: the encoding it was read with.
    """

    def __init__(self, message: str, path: str, offset: int, encoding: str) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset
        self.encoding = encoding


class EmptyCorpusError(CorpusError):
    """The corpus has no text (or no token survived encoding)."""


class CorpusTooSmallError(CorpusError):
    """The corpus (or a split of it) has fewer tokens than the task needs; says the minimum."""


# -- the download-free corpus ------------------------------------------------------------------


def python_source_files() -> list[Path]:
    """The standard-library files of :data:`STDLIB_MODULES` that this Python has, in order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [stdlib / name for name in STDLIB_MODULES if (stdlib / name).is_file()]
    if not files:
        raise NoTextFilesError(f"no standard-library source found under {stdlib}; pass --data PATH")
    return files


def python_source_corpus(max_chars: int = 1_000_000) -> str:
    """Up to ``max_chars`` characters of the Python standard library's own source code."""
    parts, total = [], 0
    for path in python_source_files():
        text = path.read_text("utf-8")
        parts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    return "".join(parts)[:max_chars]


def read_text(
    path: str | Path, encoding: str = "utf-8", normalize: Normalization | None = None
) -> str:
    """The whole text of a file or a directory's files, with the errors of :func:`iter_text`.

    Holds the whole text in memory; for large corpora use :func:`prepare_corpus`.
    """
    return "".join(iter_text(find_sources([path], encoding=encoding), encoding, normalize))


# -- finding sources ----------------------------------------------------------------------------


def find_sources(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    include: str | Sequence[str] = ("*",),
    *,
    encoding: str = "utf-8",
) -> list[Source]:
    """Expand corpus paths into the files to read, in order.

    Args:
        paths: a path or several. A file is taken as it is; a directory is searched
            recursively, in sorted order of relative path, for files matching any ``include``
            glob (against the file name, or against the path relative to the directory for a
            glob with a ``/``), skipping hidden files and directories (names starting with
            ``.``) and files that look binary (a warning says how many); ``"-"`` is standard
            input. A file reached twice is kept once, where first reached.
        include: glob(s) a file in a directory must match, e.g. ``("*.txt", "*.md")``.
        encoding: the encoding the files will be read with (NUL bytes are normal in UTF-16 and
            UTF-32, so nothing is skipped as binary then).

    Returns:
        Paths of files, and ``"-"`` where standard input was named.

    Raises:
        SourceNotFoundError: a path does not exist.
        NoTextFilesError: no path was given, or a directory has no matching text file.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    globs = (include,) if isinstance(include, str) else tuple(include)
    if not globs:
        raise CorpusError("include needs at least one glob, e.g. '*.txt' ('*' takes every file)")
    codec = _check_encoding(encoding)
    found: list[Source] = []
    seen: set[Any] = set()
    for raw in paths:
        if os.fspath(raw) == STDIN:
            if STDIN in seen:
                raise CorpusError("standard input ('-') can be named only once")
            seen.add(STDIN)
            found.append(STDIN)
            continue
        path = Path(raw)
        if path.is_dir():
            files = _search_directory(path, globs, codec)
        elif path.exists():
            files = [path]
        else:
            raise SourceNotFoundError(f"{path}: no such file or directory")
        for file in files:
            identity = _identity(file)
            if identity not in seen:
                seen.add(identity)
                found.append(file)
    if not found:
        raise NoTextFilesError("no corpus given: name a file, a directory or '-' (standard input)")
    return found


def _identity(path: Path) -> Any:
    try:
        stat = path.stat()
        return (stat.st_dev, stat.st_ino)
    except OSError:
        return os.path.abspath(path)


def _search_directory(directory: Path, globs: tuple[str, ...], codec: str) -> list[Path]:
    matches: list[tuple[tuple[str, ...], Path]] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        relative = Path(root).relative_to(directory)
        for name in files:
            if name.startswith("."):
                continue
            rel = relative / name
            if any(
                fnmatchcase(name, g) or ("/" in g and fnmatchcase(rel.as_posix(), g)) for g in globs
            ):
                matches.append((rel.parts, Path(root) / name))
    matches.sort()
    text_files, binary = [], []
    for _, path in matches:
        if _check_binary(codec, "strict") and _nul_offset(path) is not None:
            binary.append(path)
        else:
            text_files.append(path)
    wanted = ", ".join(map(repr, globs))
    if binary:
        listed = ", ".join(str(p.relative_to(directory)) for p in binary[:5])
        more = f" and {len(binary) - 5} more" if len(binary) > 5 else ""
        skipped = f"skipped {len(binary)} binary file(s): {listed}{more}"
        if text_files:
            warn(f"{directory}: {skipped}")
    if not text_files:
        detail = f" ({skipped})" if binary else ""
        raise NoTextFilesError(
            f"{directory}: no text files matching {wanted}{detail}; hidden files and "
            "directories are skipped. Pass other include globs (include=... in Python, --include "
            "on the command line) or another path."
        )
    return text_files


def _nul_offset(path: Path) -> int | None:
    try:
        with open(path, "rb") as file:
            head = file.read(BINARY_PROBE)
    except OSError:
        return None  # reported properly when the file is read
    offset = head.find(b"\x00")
    return None if offset < 0 else offset


# -- reading text -------------------------------------------------------------------------------


def iter_text(
    sources: Source | Iterable[Source],
    encoding: str = "utf-8",
    normalize: Normalization | None = None,
    chunk_chars: int = CHUNK_CHARS,
    *,
    errors: str = "strict",
) -> Iterator[str]:
    """The text of ``sources``, concatenated, as pieces of about ``chunk_chars`` characters.

    Files are read in binary and decoded incrementally (a character split between two reads is
    kept whole). Each piece but the last ends just before a whitespace character that follows a
    non-whitespace one (a line end where the piece has one), and the next piece starts there.
    No token of the built-in tokenizers and no Unicode normalisation crosses such a point, so
    encoding or normalising piece by piece gives the same result as doing it to the whole text.
    Only a stretch of ``16 * chunk_chars`` characters without any whitespace is cut elsewhere,
    with a warning, to keep memory bounded.

    Args:
        sources: paths of files (see :func:`find_sources` for directories) and ``"-"`` for
            standard input, read in order.
        encoding: any Python codec name; UTF-8 by default. The text is taken as it is (no
            newline translation; a byte-order mark is kept unless the codec drops it, as
            ``utf-8-sig`` does).
        normalize: ``"NFC"`` or ``"NFKC"`` to normalise the text, or ``None``.
        chunk_chars: bytes read at a time, and the least size of a piece (but the last).
        errors: the codec's error handler. ``"strict"`` (the default) raises on undecodable
            bytes and refuses files that look binary; ``"surrogateescape"`` keeps any byte
            (what the ``byte`` tokenizer needs to see raw bytes).

    Memory: about ``chunk_chars`` characters (a few copies of them), whatever the corpus size.

    Raises:
        BinaryFileError: a NUL byte in the first :data:`BINARY_PROBE` bytes of a file.
        CorpusDecodeError: bytes that are not valid text in ``encoding``; names the file and the
            byte offset and suggests ``--encoding`` or the ``byte`` tokenizer.
    """
    if isinstance(sources, str | os.PathLike):
        sources = [sources]
    items = [(source, _display(source)) for source in sources]
    return _stream_text(
        items,
        _check_encoding(encoding),
        _check_normalize(normalize),
        _check_chunk(chunk_chars),
        errors,
    )


def _display(source: Source) -> str:
    return "<stdin>" if os.fspath(source) == STDIN else str(source)


def _check_encoding(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except (LookupError, TypeError):
        raise CorpusError(
            f"unknown encoding {encoding!r}; pass a Python codec name such as 'utf-8', "
            "'latin-1' or 'utf-16'"
        ) from None


def _check_normalize(normalize: str | None) -> str | None:
    if normalize is None:
        return None
    form = str(normalize).upper()
    if form not in _NORMALIZATIONS:
        raise CorpusError(f"normalize must be None, 'NFC' or 'NFKC', got {normalize!r}")
    return form


def _check_chunk(chunk_chars: int) -> int:
    if isinstance(chunk_chars, bool) or not isinstance(chunk_chars, int) or chunk_chars < 1:
        raise CorpusError(f"chunk_chars must be a positive int, got {chunk_chars!r}")
    return chunk_chars


def _check_binary(codec: str, errors: str) -> bool:
    """Whether a NUL byte makes a file 'binary' for this codec and error handler."""
    return errors == "strict" and not codec.startswith(("utf-16", "utf-32"))


def _stream_text(
    items: Sequence[tuple[Source, str]],
    codec: str,
    form: str | None,
    chunk_chars: int,
    errors: str,
    on_bytes: Callable[[bytes], None] | None = None,
) -> Iterator[str]:
    """The pieces of :func:`iter_text` (arguments already checked); ``on_bytes`` sees raw bytes."""

    def finish(piece: str) -> str:
        return unicodedata.normalize(form, piece) if form else piece

    parts: list[str] = []  # text read but not yet yielded
    size = 0
    limit = _MAX_CARRY_CHUNKS * chunk_chars
    warned = False
    for source, name in items:
        for text in _decode(source, name, codec, errors, chunk_chars, on_bytes):
            parts.append(text)
            size += len(text)
            if size < chunk_chars:
                continue
            buffer = "".join(parts)
            cut = _safe_cut(buffer)
            if cut == 0:
                if size < limit:
                    parts = [buffer]
                    continue
                if not warned:
                    warn(
                        f"{name}: {size} characters without whitespace; cutting the text there "
                        "to keep memory bounded (a word token or a normalisation at that point "
                        "may differ from reading the text whole)"
                    )
                    warned = True
                cut = size
            yield finish(buffer[:cut])
            rest = buffer[cut:]
            parts, size = ([rest], len(rest)) if rest else ([], 0)
    if size:
        yield finish("".join(parts))


def _safe_cut(text: str) -> int:
    """The last index ``k > 0`` with ``text[k]`` whitespace and ``text[k - 1]`` not, or 0.

    Prefers a line end; otherwise a space. Cutting there splits no word, punctuation or
    whitespace token, and no normalisation (whitespace has combining class 0 and composes with
    nothing before it).
    """
    for separator in ("\n", " "):
        k = text.rfind(separator)
        while k > 0 and text[k - 1].isspace():
            k -= 1
        if k > 0:
            return k
    return 0


def _decode(
    source: Source,
    name: str,
    codec: str,
    errors: str,
    block_size: int,
    on_bytes: Callable[[bytes], None] | None,
) -> Iterator[str]:
    """Decoded text of one source, a block at a time."""
    if os.fspath(source) == STDIN:
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:  # a text-only stdin (e.g. replaced by a StringIO)
            while text := sys.stdin.read(block_size):
                if on_bytes is not None:
                    on_bytes(text.encode("utf-8", "surrogatepass"))
                yield text
            return
        yield from _decode_stream(stream, name, codec, errors, block_size, on_bytes)
        return
    try:
        file = open(source, "rb")  # noqa: SIM115 (closed below, also when the generator is)
    except FileNotFoundError:
        raise SourceNotFoundError(f"{name}: no such file or directory") from None
    except IsADirectoryError:
        raise CorpusError(
            f"{name}: is a directory; pass it as files=... (or --data on the command line), "
            "which searches directories, or expand it with find_sources"
        ) from None
    except OSError as error:
        raise CorpusError(f"{name}: cannot read: {error.strerror or error}") from None
    with file:
        yield from _decode_stream(file, name, codec, errors, block_size, on_bytes)


def _decode_stream(
    stream: Any,
    name: str,
    codec: str,
    errors: str,
    block_size: int,
    on_bytes: Callable[[bytes], None] | None,
) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder(codec)(errors)
    check_binary = _check_binary(codec, errors)
    offset = 0  # bytes of this source fed to the decoder so far
    while True:
        block = stream.read(block_size)
        if on_bytes is not None and block:
            on_bytes(block)
        if check_binary and offset < BINARY_PROBE and block:
            nul = block.find(b"\x00", 0, BINARY_PROBE - offset)
            if nul >= 0:
                raise BinaryFileError(
                    f"{name}: looks like a binary file, not text (a NUL byte at byte offset "
                    f"{offset + nul}). If it is text in another encoding, pass it (e.g. "
                    "encoding='utf-16' in Python, --encoding utf-16 on the command line); to "
                    "train on raw bytes, use the 'byte' tokenizer.",
                    name,
                    offset + nul,
                )
        try:
            text = decoder.decode(block, final=not block)
        except UnicodeDecodeError as error:
            raise _decode_error(error, name, codec, offset, len(block)) from None
        offset += len(block)
        if text:
            yield text
        if not block:
            return


def _decode_error(
    error: UnicodeDecodeError, name: str, codec: str, fed: int, block_len: int
) -> CorpusDecodeError:
    # The decoder may hold back the start of a multi-byte character from the previous block;
    # the error's object is then those pending bytes followed by this block.
    pending = max(0, len(error.object) - block_len)
    offset = max(0, fed - pending + error.start)
    bad = bytes(error.object[error.start : min(error.end, error.start + 4)])
    message = (
        f"{name}: not valid {codec} text at byte offset {offset} (byte(s) {bad.hex(' ')}: "
        f"{error.reason}). Pass the file's encoding (e.g. encoding='latin-1' or 'cp1252' in "
        "Python, --encoding latin-1 on the command line), or use the 'byte' tokenizer, which "
        "takes any bytes."
    )
    return CorpusDecodeError(message, name, offset, codec)


# -- encoding once, into a cached array ---------------------------------------------------------


def ids_dtype(vocab_size: int) -> np.dtype:
    """The smallest dtype for ids in ``range(vocab_size)``: uint8, uint16 or int32."""
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


@attrs.frozen(eq=False)
class Splits:
    """Contiguous train / val / test parts of an encoded corpus (views of its ids, not copies).

    Attributes:
        train, val, test: the ids of each part (a part with fraction 0 is empty).
        bounds: ``{"train": [0, a], "val": [a, b], "test": [b, n]}``, JSON-ready, for the
            checkpoint.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    bounds: dict[str, list[int]]

    def __getitem__(self, name: str) -> np.ndarray:
        """The part called ``name`` (``"train"``, ``"val"`` or ``"test"``)."""
        if name not in self.bounds:
            raise CorpusError(f"no split {name!r}; the splits are 'train', 'val' and 'test'")
        return getattr(self, name)


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


def split_ids(ids: np.ndarray, val: float = 0.05, test: float = 0.05) -> Splits:
    """:meth:`EncodedCorpus.split` for any 1-D array of ids."""
    n = int(len(ids))
    fractions = {"val": _fraction("val", val), "test": _fraction("test", test)}
    if fractions["val"] + fractions["test"] >= 1:
        raise CorpusError(
            f"val + test must be below 1 so that some text is left to train on; "
            f"got val={val}, test={test}"
        )
    if n == 0:
        raise EmptyCorpusError("the corpus is empty: there is nothing to split")
    train_end = math.floor(n * (1 - fractions["val"] - fractions["test"]))
    val_end = math.floor(n * (1 - fractions["test"]))
    sizes = {"train": train_end, "val": val_end - train_end, "test": n - val_end}
    grown = []
    for name in ("val", "test"):
        if fractions[name] > 0 and sizes[name] < 2:
            sizes["train"] -= 2 - sizes[name]
            sizes[name] = 2
            grown.append(name)
    if sizes["train"] < 2:
        needed = 2 + sum(2 for f in fractions.values() if f > 0)
        raise CorpusTooSmallError(
            f"the corpus has {n} tokens: too few for a training part of at least 2 tokens plus "
            f"val ({val}) and test ({test}) parts of at least 2 each; it needs at least "
            f"{needed} tokens, or set train.val_fraction = 0 and train.test_fraction = 0"
        )
    if grown:
        warn(
            f"the corpus has only {n} tokens; the {' and '.join(grown)} part(s) get 2 tokens, "
            "the least that can be evaluated"
        )
    a = sizes["train"]
    b = a + sizes["val"]
    bounds = {"train": [0, a], "val": [a, b], "test": [b, n]}
    return Splits(train=ids[:a], val=ids[a:b], test=ids[b:], bounds=bounds)


def _fraction(name: str, value: Any) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CorpusError(f"{name} must be a number in [0, 1), got {value!r}")
    if not 0 <= value < 1:
        raise CorpusError(f"{name} must be in [0, 1), got {value!r}")
    return Fraction(str(value)) if isinstance(value, float) else Fraction(value)


def prepare_corpus(
    sources: Source | Iterable[Source],
    tokenizer: Tokenizer,
    cache_dir: str | os.PathLike[str],
    *,
    encoding: str = "utf-8",
    normalize: Normalization | None = None,
    errors: str | None = None,
    chunk_chars: int = CHUNK_CHARS,
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

    Raises:
        EmptyCorpusError: no bytes, or no token after encoding.
        BinaryFileError, CorpusDecodeError, SourceNotFoundError: see :func:`iter_text`.
    """
    codec = _check_encoding(encoding)
    form = _check_normalize(normalize)
    chunk_chars = _check_chunk(chunk_chars)
    if errors is None:
        errors = "surrogateescape" if getattr(tokenizer, "kind", None) == "byte" else "strict"
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

        hasher = hashlib.sha256()
        if tokenizer.is_fitted:
            for path, _ in items:
                with open(path, "rb") as file:
                    while block := file.read(_READ_BLOCK):
                        hasher.update(block)
        else:
            pieces = _stream_text(items, codec, form, chunk_chars, errors, hasher.update)
            tokenizer.fit_chunks(pieces)
            for _ in pieces:  # make sure every byte was hashed, whatever fit_chunks did
                pass
        content = hasher.hexdigest()

        state = tokenizer.state_dict()
        vocab_size = int(tokenizer.vocab_size)
        dtype = ids_dtype(vocab_size)
        key_material = {
            "format": _CACHE_FORMAT,
            "content": content,
            "sizes": sizes,
            "encoding": codec,
            "errors": errors,
            "normalize": form,
            "tokenizer": f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}",
            "state": state,
        }
        blob = json.dumps(key_material, sort_keys=True, ensure_ascii=True, default=str)
        key = hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]
        ids_path, meta_path = cache / f"{key}.ids", cache / f"{key}.json"

        tokens = _cached_tokens(ids_path, meta_path, key, dtype)
        reused = tokens is not None
        if tokens is None:
            tokens = _encode_to_file(
                items, tokenizer, dtype, ids_path, codec, form, chunk_chars, errors
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
                "tokenizer": key_material["tokenizer"],
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
    try:
        meta = json.loads(meta_path.read_text("utf-8"))
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
) -> int:
    """Pass 2: encode piece by piece into a temporary file, then rename it to ``ids_path``."""
    tokens = 0
    with atomic_write(ids_path) as out:
        start = 0  # characters of the (normalised) text before this piece
        for piece in _stream_text(items, codec, form, chunk_chars, errors):
            try:
                ids = np.asarray(tokenizer.encode_array(piece))
            except CharseqError as error:
                raise _in_corpus(error, items, start) from None
            ids.astype(dtype, copy=False).tofile(out)
            tokens += ids.size
            start += len(piece)
    return tokens


def _in_corpus(error: CharseqError, items: Sequence[tuple[Source, str]], start: int) -> Exception:
    """``error`` itself (same class and attributes), its message saying where in the corpus."""
    where = (
        f"while encoding {_list_names([name for _, name in items])}, in the text from "
        f"character {start} on (positions below count from there): "
    )
    error.args = (where + str(error), *error.args[1:])
    return error
