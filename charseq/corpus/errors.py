"""The errors of reading, encoding and splitting a corpus."""

from __future__ import annotations

from charseq.errors import CharseqError


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

    def __init__(
        self,
        message: str,
        path: str,
        offset: int,
        *,
        argument: str | tuple[str, ...] | None = None,
    ) -> None:
        super().__init__(message, argument=argument)
        self.path = path
        self.offset = offset


class CorpusDecodeError(CorpusError):
    """A file is not valid text in the given encoding.

    Attributes:
        path: the file, as named in the message.
        offset: the absolute byte offset, in that file, of the first undecodable byte.
        encoding: the encoding it was read with.
    """

    def __init__(
        self,
        message: str,
        path: str,
        offset: int,
        encoding: str,
        *,
        argument: str | tuple[str, ...] | None = None,
    ) -> None:
        super().__init__(message, argument=argument)
        self.path = path
        self.offset = offset
        self.encoding = encoding


class EmptyCorpusError(CorpusError):
    """The corpus has no text (or no token survived encoding)."""


class CorpusTooSmallError(CorpusError):
    """The corpus (or a split of it) has fewer tokens than the task needs; says the minimum."""
