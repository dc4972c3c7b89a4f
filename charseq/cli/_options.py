"""The options several commands share, each written once: its flag, its type and its help.

A decorator per option (``@device_option()``); where commands differ in what the option applies
to, the decorator takes that part of the help as an argument and writes the rest.
:func:`parse_setting` reads the ``--set KEY=VALUE`` both ``train`` and ``sample`` take.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from charseq.corpus.arguments import NORMALIZATIONS
from charseq.errors import CharseqError, SpecError
from charseq.interfaces import UNKNOWN_POLICIES
from charseq.spec import TOO_MANY_DIGITS

__all__ = [
    "NORMALIZATIONS",
    "UNKNOWN_POLICIES",
    "data_option",
    "device_option",
    "json_option",
    "parse_setting",
    "set_option",
    "unknown_option",
]

F = TypeVar("F", bound=Callable[..., Any])


def device_option() -> Callable[[F], F]:
    """``--device``: where the model runs (default: the best device found)."""
    return click.option(
        "--device", default=None, help="cpu, cuda, cuda:1, mps (default: the best found)."
    )


def unknown_option(characters: str = "characters", also: str = "") -> Callable[[F], F]:
    """``--unknown``: the policy for ``characters`` outside the vocabulary (``prime
    characters`` for ``sample``); ``also`` ends the help (what the policy means there)."""
    return click.option(
        "--unknown",
        type=click.Choice(UNKNOWN_POLICIES),
        help=f"What to do with {characters} outside the vocabulary (default: the "
        f"tokenizer's){also}.",
    )


def json_option() -> Callable[[F], F]:
    """``--json``: machine-readable output, into the parameter ``as_json``."""
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def data_option(help: str) -> Callable[[F], F]:
    """``--data``: text files, directories or ``-``, repeatable, into ``data_paths``; ``help``
    says what the command does with them."""
    return click.option("--data", "data_paths", multiple=True, metavar="PATH", help=help)


def set_option(what: str, example: str, metavar: str, aside: str = "") -> Callable[[F], F]:
    """``--set``: repeatable ``KEY=VALUE`` overrides into ``settings``; the help reads
    ``{what}, e.g. --set {example} ({aside}repeatable).``"""
    return click.option(
        "--set",
        "settings",
        multiple=True,
        metavar=metavar,
        help=f"{what}, e.g. --set {example} ({aside}repeatable).",
    )


def parse_setting(
    setting: str, flag: str = "--set", example: str = "cell.hidden_size=256"
) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as JSON where it parses (numbers, booleans), else a string.

    Raises:
        CharseqError: no ``=`` or no key (the message shows ``example``).
        SpecError: VALUE is an integer longer than Python reads.
    """
    key, sep, value = setting.partition("=")
    if not sep or not key.strip():
        raise CharseqError(f"{flag} {setting!r}: expected KEY=VALUE, e.g. {example}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value
    except ValueError:  # an integer longer than Python reads
        raise SpecError(key.strip(), TOO_MANY_DIGITS) from None


def column_options(what: str = "") -> Callable[[F], F]:
    """``--text-column`` and ``--label-column``: the columns of a labelled TSV/CSV ``--data``
    (default: a header's ``text`` and ``label``, or the first two columns)."""

    def add(command: F) -> F:
        command = click.option(
            "--label-column", help=f"{what}The label column of a TSV/CSV --data (default: found)."
        )(command)
        return click.option(
            "--text-column", help=f"{what}The text column of a TSV/CSV --data (default: found)."
        )(command)

    return add
