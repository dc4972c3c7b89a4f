"""Cutting text at stop strings: where the first one ends, and how much of a text's end a
stream must hold back because it could begin one."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def cut_at_stop(text: str, stops: Iterable[str], start: int = 0) -> int | None:
    """The end of the earliest-ending stop string in ``text`` (searching from ``start``), or
    ``None``. The text up to that end, stop string included, is what generation returns."""
    best: int | None = None
    for stop in stops:
        found = text.find(stop, start)
        if found >= 0 and (best is None or found + len(stop) < best):
            best = found + len(stop)
    return best


def apply_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` cut just after the first stop string it holds (unchanged if none)."""
    end = cut_at_stop(text, stops)
    return text if end is None else text[:end]


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many characters at the end of ``text`` could begin a stop string (so a stream must
    not emit them yet)."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest
