"""Corpora: reading text from files, and a corpus every Python install already has.

char-rnn was famously trained on the Linux kernel's source. charseq's download-free corpus is
the source code of Python's own standard library, read in a fixed order, so the main job runs on
a fresh machine with no download.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

from charseq.errors import CharseqError

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
"""Standard-library modules read, in this order, by :func:`python_source_corpus`."""


def python_source_corpus(max_chars: int = 1_000_000) -> str:
    """Up to ``max_chars`` characters of the Python standard library's own source code."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for name in STDLIB_MODULES:
        path = stdlib / name
        if not path.is_file():
            continue
        text = path.read_text("utf-8")
        parts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    if not parts:
        raise CharseqError(f"no standard-library source found under {stdlib}; pass --data PATH")
    return "".join(parts)[:max_chars]


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """The text of ``path``, with a clear error for a missing file or a wrong encoding."""
    path = Path(path)
    if not path.exists():
        raise CharseqError(f"{path}: no such file")
    if path.is_dir():
        raise CharseqError(f"{path}: is a directory; pass a text file")
    try:
        return path.read_text(encoding)
    except UnicodeDecodeError as error:
        raise CharseqError(
            f"{path}: not valid {encoding} at byte {error.start}; pass the right --encoding "
            "or use the byte tokenizer"
        ) from None
