"""How a command ends: the exit statuses, and the one place an error becomes the ``Error:`` line.

Every command is wrapped in :func:`clean_exits`. A :class:`~charseq.errors.CharseqError` (what the
command was given is wrong), a file the machine refuses and memory it does not have all end as
``Error: <reason>`` on stderr with status 1; Ctrl-C is status 130; a reader that goes away
(``| head``) ends the command quietly with status 0.

The library's errors speak Python (``files=...``, ``unknown='skip'``); the command line speaks
flags. An error that names the Python argument it is about (``error.argument``) is shown with the
command's own flag in its place: :func:`error_line` looks the flag up among the running command's
options, so the flags are written once, in the option decorators.
"""

from __future__ import annotations

import ast
import functools
import os
import re
import shlex
import sys
from collections.abc import Callable
from typing import Any

import click

from charseq.errors import CharseqError

__all__ = ["clean_exits", "error_line"]


def clean_exits(command: Callable[..., None]) -> Callable[..., None]:
    """Ctrl-C exits with status 130, a reader that stops early (``| head``) ends the command
    quietly with status 0, and what the command was given or the machine refuses (a
    :class:`~charseq.errors.CharseqError`, a file it cannot read or write, memory it does not
    have) is an ``Error:`` line with status 1: no traceback, no 'Aborted!'."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        except CharseqError as error:
            _fail(error_line(error))
        except KeyboardInterrupt:
            raise SystemExit(130) from None
        except BrokenPipeError:
            # Python's advice: point stdout at devnull so the flush at exit cannot fail again
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, sys.stdout.fileno())
            finally:
                os.close(devnull)
            raise SystemExit(0) from None
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            _fail(f"{where}{error.strerror or error}")
        except (MemoryError, RuntimeError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            if isinstance(error, RuntimeError) and not _OUT_OF_MEMORY.search(first):
                raise
            _fail(f"not enough memory for this: {first}")

    return run


_OUT_OF_MEMORY = re.compile(r"can't allocate memory|out of memory|not enough memory", re.I)


def _fail(message: str) -> None:
    raise click.ClickException(message) from None


def error_line(error: BaseException) -> str:
    """What follows ``Error:`` for ``error`` (or ``warning:`` for a warning): its message and its
    notes (``add_note``), one line apart by a space as the message's own sentences are, in the
    command line's terms.

    For each Python argument the error names (its ``argument`` attribute: ``"files"``, or a
    tuple of names) that the running command has a flag for, each ``argument=VALUE`` in the text
    is written as that flag: ``files=...`` -> ``--data PATH``, ``unknown='skip'`` ->
    ``--unknown skip``, ``files=['a', 'b']`` -> ``--data a --data b``, ``overwrite=True`` ->
    ``--overwrite``; and ``Pipeline.resume('run')`` -> ``--resume run``. An error without one
    is shown as it reads.
    """
    message = " ".join([str(error), *getattr(error, "__notes__", ())])
    named = getattr(error, "argument", None)
    arguments = (named,) if isinstance(named, str) else named
    if not isinstance(arguments, tuple):
        return message
    for argument in arguments:
        option = _option_for(argument) if isinstance(argument, str) else None
        if option is None:
            continue
        message = re.sub(
            rf"(?<![\w.]){re.escape(argument)}=({_VALUE})",
            lambda found, option=option: _as_flag(found[1], option),
            message,
        )
        call = _CALL_OF_ARGUMENT.get(argument)
        if call is not None:
            message = re.sub(
                rf"(?<![\w.]){re.escape(call)}\(('[^']*'|\"[^\"]*\")\)",
                lambda found, option=option: _as_flag(found[1], option),
                message,
            )
    return message


_VALUE = r"'[^']*'|\"[^\"]*\"|\[[^\]]*\]|\.\.\.|[^\s,;)]+"
"""A value as a message writes it after ``argument=``: a quoted string, a list, ``...`` (any
value), or a word."""

_CALL_OF_ARGUMENT = {"resume": "Pipeline.resume"}
"""The library's calls that the command line makes an option of (``Pipeline.resume('run')`` is
``--resume run``)."""

_OPTION_OF_ARGUMENT = {
    "files": "data_paths",
    "out": "out_dir",
    "resume": "resume_dir",
    "spec": "spec_path",
    "stop": "stops",
}
"""The library's argument names whose option the command line names differently; every other
argument is the option of the same name (``unknown`` -> ``--unknown``)."""


def _option_for(argument: str) -> click.Option | None:
    """The running command's option for the Python ``argument``, or None (no command running,
    or no such flag in it)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    name = _OPTION_OF_ARGUMENT.get(argument, argument)
    for param in ctx.command.params:
        if isinstance(param, click.Option) and param.name == name:
            return param
    return None


def _flag(option: click.Option) -> str:
    return max(option.opts, key=len)  # the long form: --data, not -d


def _as_flag(value: str, option: click.Option) -> str:
    """The flag with a Python ``value`` as it is typed after it: ``'skip'`` -> ``--unknown
    skip``, ``...`` -> ``--data PATH`` (the option's metavar), a list -> the flag once for each
    item, ``True`` for an on/off flag -> the flag alone."""
    flag = _flag(option)
    if value in ("...", "[...]"):
        return f"{flag} {option.metavar or option.type.name.upper()}"
    if option.is_flag and value == "True":
        return flag
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return f"{flag} {value}"
    if isinstance(parsed, list) and parsed and all(isinstance(item, str) for item in parsed):
        return " ".join(f"{flag} {shlex.quote(item)}" for item in parsed)
    if isinstance(parsed, str):
        return f"{flag} {shlex.quote(parsed)}"
    return f"{flag} {value}"
