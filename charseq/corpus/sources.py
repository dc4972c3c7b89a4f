"""Finding a corpus's sources: files, directories searched recursively, standard input; and the
download-free corpus of Python's own standard library."""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from charseq.corpus.arguments import (
    check_encoding,
    nul_means_binary,
)
from charseq.corpus.errors import (
    CorpusError,
    NoTextFilesError,
    SourceNotFoundError,
)
from charseq.errors import warn

Source = Path | str
"""A file path, or ``"-"`` for standard input."""

STDIN = "-"

BINARY_PROBE = 8000
"""A NUL byte in a file's first this many bytes marks it as binary (git's rule)."""

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


def python_source_files() -> list[Path]:
    """The standard-library files of :data:`STDLIB_MODULES` that this Python has, in order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [stdlib / name for name in STDLIB_MODULES if (stdlib / name).is_file()]
    if not files:
        raise NoTextFilesError(
            f"no standard-library source found under {stdlib}; pass files=...", argument="files"
        )
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
    codec = check_encoding(encoding)
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
        if nul_means_binary(codec, "strict") and _nul_offset(path) is not None:
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
            "directories are skipped. Pass other include globs (include=...) or another path.",
            argument="include",
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
