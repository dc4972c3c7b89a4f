"""Progress bars for the slow phases that are not training steps: fitting a tokenizer on, and
encoding, a large corpus, and evaluating a large split.

They look like the training bar (:class:`~charseq.callbacks.ProgressBar`): tqdm, on standard
error. A phase shows a bar only where one is wanted (``show=True``: the training bar is shown;
``show=None``: standard error is a terminal) and only when it is large enough to take a while
(``total >= minimum``), so small corpora, tests and piped output stay silent.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

CORPUS_PROGRESS_BYTES = 16 << 20
"""The smallest corpus (bytes) whose reading and encoding show a bar: about a second's work for
the ``char`` tokenizer (a 200 MB corpus took 11 s, 36 s with ``word``)."""

EVAL_PROGRESS_TOKENS = 1 << 18
"""The smallest evaluation (tokens) that shows a bar."""


def wanted(show: bool | None, file: TextIO | None = None) -> bool:
    """Whether to show progress: ``show`` itself, or for ``None`` whether ``file`` (by default
    standard error) is a terminal."""
    if show is not None:
        return show
    stream = sys.stderr if file is None else file
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def open_bar(desc: str, total: int, *, unit: str, file: TextIO | None = None) -> Any:
    """A tqdm bar for one phase, on ``file`` (default: standard error). It is cleared when
    closed: the phase's end is what follows it (training, or the result)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        file=sys.stderr if file is None else file,
        dynamic_ncols=True,
        leave=False,
    )


def _ignore(amount: int) -> None:
    pass


@contextmanager
def phase(
    desc: str,
    total: int,
    *,
    unit: str,
    show: bool | None,
    minimum: int,
    file: TextIO | None = None,
) -> Iterator[Callable[[int], None]]:
    """A bar for a phase of ``total`` ``unit``: yields the function to call with each amount
    done; it does nothing when no bar is :func:`wanted` or ``total < minimum``."""
    if total < minimum or not wanted(show, file):
        yield _ignore
        return
    bar = open_bar(desc, total, unit=unit, file=file)
    try:
        yield bar.update
    finally:
        bar.close()
