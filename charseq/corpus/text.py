"""Reading a corpus as one text, a piece at a time: decoding, checking and normalising it."""

from __future__ import annotations

import codecs
import os
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from charseq.corpus.arguments import (
    Normalization,
    check_chunk,
    check_encoding,
    check_normalize,
    nul_means_binary,
)
from charseq.corpus.errors import (
    BinaryFileError,
    CorpusDecodeError,
    CorpusError,
    SourceNotFoundError,
)
from charseq.corpus.sources import BINARY_PROBE, STDIN, Source, find_sources
from charseq.errors import warn

CHUNK_CHARS = 1 << 18
"""Characters per piece read, fitted and encoded at a time (256 Ki)."""

_MAX_CARRY_CHUNKS = 16  # a stretch with no whitespace is cut after this many chunks
_READ_BLOCK = 1 << 20  # bytes read at a time when only hashing or copying


def read_text(
    path: str | Path, encoding: str = "utf-8", normalize: Normalization | None = None
) -> str:
    """The whole text of a file or a directory's files, with the errors of :func:`iter_text`.

    Holds the whole text in memory; for large corpora use :func:`prepare_corpus`.
    """
    return "".join(iter_text(find_sources([path], encoding=encoding), encoding, normalize))


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
            byte offset and suggests ``encoding`` or the ``byte`` tokenizer.
    """
    if isinstance(sources, str | os.PathLike):
        sources = [sources]
    items = [(source, _display(source)) for source in sources]
    return _stream_text(
        items,
        check_encoding(encoding),
        check_normalize(normalize),
        check_chunk(chunk_chars),
        errors,
    )


def _display(source: Source) -> str:
    return "<stdin>" if os.fspath(source) == STDIN else str(source)


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
            f"{name}: is a directory; pass it as files=..., which searches directories, or "
            "expand it with find_sources",
            argument="files",
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
    check_binary = nul_means_binary(codec, errors)
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
                    "encoding='utf-16'); to train on raw bytes, use the 'byte' tokenizer.",
                    name,
                    offset + nul,
                    argument="encoding",
                )
        try:
            text = decoder.decode(block, final=not block)
        except UnicodeDecodeError as error:
            raise _decode_error(error, name, codec, offset, len(block)) from None
        except UnicodeError as error:  # e.g. utf-16 without a byte-order mark
            raise CorpusDecodeError(
                f"{name}: cannot be read as {codec} ({error}); pass the file's encoding "
                "(e.g. encoding='utf-16-le' for UTF-16 without a byte-order mark)",
                name,
                offset,
                codec,
                argument="encoding",
            ) from None
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
        f"{error.reason}). Pass the file's encoding (e.g. encoding='latin-1' or "
        "encoding='cp1252'), or use the 'byte' tokenizer, which takes any bytes."
    )
    return CorpusDecodeError(message, name, offset, codec, argument="encoding")
