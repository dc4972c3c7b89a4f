"""Checking a runtime argument, with one message shape: "`name` must be ..., got ...".

Spec values are checked by :mod:`charseq.options`; these helpers are for the arguments of a
call (``max_new_tokens=``, ``top=``, ``unknown=``), where a wrong value raises ``error`` (a
:class:`~charseq.errors.CharseqError` subclass by default) before any work starts::

    require_int(top, "top", min=0)         # top must be an int >= 0, got -1
    require_int(n, "max_new_tokens")       # max_new_tokens must be an int, got float 10.0
    require_at_most(n, "num_samples", 1_000_000, why=" (MAX_NUM_SAMPLES, ...)")
    require_choice(unknown, "unknown", UNKNOWN_POLICIES)

and the pieces such messages are made of: :func:`short_repr` and :func:`describe_value` (a
value, short), :func:`describe_char` (a character and its code point), :func:`either` (the
choices). This module is the bottom of the core (it imports only :mod:`charseq.errors`), so
:mod:`charseq.options` builds on it too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeGuard

from charseq.errors import CharseqError


def is_int(value: Any) -> TypeGuard[int]:
    """Whether ``value`` is an int and not a bool (``True`` is an int to Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> TypeGuard[int | float]:
    """Whether ``value`` is an int or a float and not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def require_int(
    value: Any,
    name: str,
    *,
    min: int | None = None,  # noqa: A002 (the word the message uses)
    error: type[Exception] = CharseqError,
) -> int:
    """``value`` if it is an int (not a bool), at least ``min`` if given; else raise ``error``:
    "`name` must be an int >= 0, got -1", or without ``min`` "`name` must be an int, got
    float 10.0" (then the value's type is named)."""
    if is_int(value) and (min is None or value >= min):
        return value
    if min is None:
        raise error(f"{name} must be an int, got {describe_value(value)}")
    raise error(f"{name} must be an int >= {min}, got {short_repr(value)}")


def require_at_most(
    value: int,
    name: str,
    max: int,  # noqa: A002 (the word the message uses)
    *,
    why: str = "",
    error: type[Exception] = CharseqError,
) -> int:
    """``value`` (an int) if it is at most ``max``, else raise ``error``: "`name` must be at
    most 1000000{why}, got 2000000"."""
    if value > max:
        raise error(f"{name} must be at most {max}{why}, got {short_repr(value)}")
    return value


def require_str(value: Any, name: str, *, error: type[Exception] = CharseqError) -> str:
    """``value`` if it is a str, else raise ``error``: "`name` must be a str, got int"."""
    if not isinstance(value, str):
        raise error(f"{name} must be a str, got {type(value).__name__}")
    return value


def require_choice(
    value: Any, name: str, choices: Sequence[Any], *, error: type[Exception] = CharseqError
) -> Any:
    """``value`` if it is one of ``choices``, else raise ``error``: "`name` must be 'a', 'b'
    or 'c', got 'd'"."""
    if value not in choices:
        raise error(f"{name} must be {either(choices)}, got {value!r}")
    return value


def either(choices: Sequence[Any]) -> str:
    """``choices`` as a message lists them: ``"'a', 'b' or 'c'"``."""
    shown = [repr(choice) for choice in choices]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def short_repr(value: Any) -> str:
    """``repr(value)``, short: an integer too long to print (Python prints at most 4300 digits)
    by its number of digits, a long string by its start and length."""
    if _long_int(value):
        digits = int((value.bit_length() - 1) * math.log10(2)) + 1
        digits += abs(value) >= 10**digits
        return f"an integer of {digits} digits"
    if isinstance(value, str) and len(value) > 80:
        return f"{value[:40]!r}... ({len(value)} characters)"
    return repr(value)


def describe_value(value: Any) -> str:
    """``value`` as a message names what it got: its type and :func:`short_repr` (``"str
    '5'"``), or for an integer too long to print, its number of digits."""
    return short_repr(value) if _long_int(value) else f"{type(value).__name__} {short_repr(value)}"


def describe_char(char: str) -> str:
    """A character as messages name it: ``"'é' (U+00E9)"``."""
    return f"{char!r} (U+{ord(char):04X})"


def _long_int(value: Any) -> bool:
    return is_int(value) and value.bit_length() > 128
