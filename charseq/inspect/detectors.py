"""Feature detectors: what a text is doing at each character, computed from the text alone.

A detector maps a text to one float per character: 0 or 1 for an indicator (inside a string),
a count for a quantity (nesting depth). Each value describes the text *as read up to and
including* that character, which is what a recurrent unit can know after reading it: an
opening quote is inside the string and its closing quote is not; an opening bracket raises the
depth and its closing bracket lowers it again.

Detectors are a plugin kind of their own. charseq's are registered below, through charseq's
own entry point; a plugin adds more with the ``charseq_register_detectors`` hook::

    @charseq.hookimpl
    def charseq_register_detectors(registry):
        registry.add("url", inside_url, help="inside an http(s) URL")

:func:`detect` runs them on the text of some :class:`~charseq.inspect.Activations`, one value
per token; :func:`~charseq.inspect.find_units` looks for the units that track each one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

import attrs
import numpy as np

from charseq.errors import CharseqError
from charseq.hookspecs import hookimpl
from charseq.registry import get_registry

if TYPE_CHECKING:
    from charseq.inspect.activations import Activations
    from charseq.registry import Registrar, Registry

__all__ = [
    "Detector",
    "in_braces",
    "in_brackets",
    "in_comment",
    "depth",
    "detect",
    "digit",
    "indent",
    "line_position",
    "line_start",
    "in_parens",
    "in_quotes",
    "upper",
    "in_word",
    "word_position",
]

Detector = Callable[..., np.ndarray]
"""``detector(text, **options) -> (len(text),) float array``."""

_WORD = re.compile(r"\w+")


def _flags(text: str, test: Callable[[str], bool]) -> np.ndarray:
    return np.array([test(c) for c in text], dtype=np.float64)


def _strings_and_comments(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Which characters are in a string and which in a comment, as Python reads them.

    Returns ``quoted`` (int8: 0 in code, 1 in a ``"`` string, 2 in a ``'`` string; a string
    runs from its opening quote, included, to its closing quote, excluded) and ``comment``
    (bool: from a ``#`` in code to the end of its line). A backslash escapes the character after
    it; a one-quote string ends at the end of its line, a triple-quoted one runs on.
    """
    quoted, comment = np.zeros(len(text), dtype=np.int8), np.zeros(len(text), dtype=bool)
    i = 0
    while i < len(text):
        c = text[i]
        if c == "#":
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            comment[i:end], i = True, end
        elif c in "\"'":
            close = c * 3 if text.startswith(c * 3, i) else c
            j = i + len(close)
            while j < len(text) and not text.startswith(close, j):
                if text[j] == "\n" and len(close) == 1:
                    break
                j += 2 if text[j] == "\\" else 1
            quoted[i:j] = 1 if c == '"' else 2
            i = j + len(close) * text.startswith(close, j)
        else:
            i += 1
    return quoted, comment


def in_quotes(text: str) -> np.ndarray:
    """Inside a double-quoted string (``"..."``, or triple-quoted), from its opening quotes
    (included) to its closing quotes (excluded), as Python reads strings: a ``"`` in a comment
    or in a ``'...'`` string opens nothing."""
    quoted, _ = _strings_and_comments(text)
    return (quoted == 1).astype(np.float64)


def in_comment(text: str) -> np.ndarray:
    """Inside a ``#`` comment: from a ``#`` outside strings (included) to the end of the line
    (the newline excluded)."""
    _, comment = _strings_and_comments(text)
    return comment.astype(np.float64)


def _open_brackets(text: str, opening: str, closing: str) -> np.ndarray:
    """How many ``opening`` brackets are open after each character (never below 0); brackets
    in strings and comments do not count."""
    quoted, comment = _strings_and_comments(text)
    depth, values = 0, np.zeros(len(text))
    for i, c in enumerate(text):
        if not quoted[i] and not comment[i]:
            depth = depth + 1 if c in opening else max(depth - (c in closing), 0)
        values[i] = depth
    return values


def in_parens(text: str) -> np.ndarray:
    """Inside parentheses: 1 from an opening ``(`` (included) to its closing ``)`` (excluded);
    brackets in strings and comments do not count."""
    return (_open_brackets(text, "(", ")") > 0).astype(np.float64)


def in_brackets(text: str) -> np.ndarray:
    """Inside square brackets ``[`` ... ``]``, as :func:`in_parens`."""
    return (_open_brackets(text, "[", "]") > 0).astype(np.float64)


def in_braces(text: str) -> np.ndarray:
    """Inside braces ``{`` ... ``}``, as :func:`in_parens`."""
    return (_open_brackets(text, "{", "}") > 0).astype(np.float64)


def depth(text: str) -> np.ndarray:
    """Nesting depth: how many brackets of all three kinds are open after each character."""
    return _open_brackets(text, "([{", ")]}")


def line_position(text: str) -> np.ndarray:
    """Position in the line: characters of the line read so far (1 on its first character,
    0 on a newline, after which the next line starts)."""
    values, column = np.zeros(len(text)), 0
    for i, c in enumerate(text):
        column = 0 if c == "\n" else column + 1
        values[i] = column
    return values


def line_start(text: str) -> np.ndarray:
    """Line start: 1 on the first character of each line (and of the text)."""
    return np.array([i == 0 or text[i - 1] == "\n" for i in range(len(text))], dtype=np.float64)


def in_word(text: str) -> np.ndarray:
    """Inside a word: 1 on letters, digits and ``_`` (the characters of a Python name)."""
    values = np.zeros(len(text))
    for match in _WORD.finditer(text):
        values[match.start() : match.end()] = 1
    return values


def word_position(text: str) -> np.ndarray:
    """Position in the word: 1 on a word's first character, 2 on its second, ...; 0 outside."""
    values = np.zeros(len(text))
    for match in _WORD.finditer(text):
        values[match.start() : match.end()] = np.arange(1, len(match.group()) + 1)
    return values


def indent(text: str) -> np.ndarray:
    """Indentation: the width of the line's leading spaces and tabs (one each), counted as they
    are read; the rest of the line, its newline included, keeps the full width."""
    values, width, leading = np.zeros(len(text)), 0, True
    for i, c in enumerate(text):
        if leading and c in " \t":
            width += 1
        else:
            leading = False
        values[i] = width
        if c == "\n":
            width, leading = 0, True
    return values


def upper(text: str) -> np.ndarray:
    """Upper case: 1 on an upper-case letter."""
    return _flags(text, str.isupper)


def digit(text: str) -> np.ndarray:
    """Digit: 1 on a decimal digit."""
    return _flags(text, str.isdigit)


BUILTIN: dict[str, tuple[Detector, str]] = {
    "in-quotes": (in_quotes, 'inside a "string", its opening quote included, its closing one not'),
    "in-parens": (in_parens, "inside ( ), outside strings and comments"),
    "in-brackets": (in_brackets, "inside [ ], outside strings and comments"),
    "in-braces": (in_braces, "inside { }, outside strings and comments"),
    "depth": (depth, "how many brackets of all kinds are open"),
    "line-position": (line_position, "characters of the line read so far (0 on a newline)"),
    "line-start": (line_start, "the first character of a line"),
    "in-word": (in_word, "a letter, digit or _"),
    "word-position": (word_position, "position in the word: 1, 2, ...; 0 outside words"),
    "indent": (indent, "width of the line's indentation, as read so far"),
    "in-comment": (in_comment, "inside a # comment, up to the newline"),
    "upper": (upper, "an upper-case letter"),
    "digit": (digit, "a decimal digit"),
}
"""charseq's detectors: each name, function and one-line help, in the order a listing shows
them."""


@hookimpl
def charseq_register_detectors(registry: Registrar) -> None:
    for name, (detector, help) in BUILTIN.items():
        registry.add(name, detector, help=help)


def detect(
    acts: Activations,
    detectors: Iterable[str] | Mapping[str, Detector] | None = None,
    *,
    registry: Registry | None = None,
) -> dict[str, np.ndarray]:
    """Run detectors on the text of ``acts``: one ``(T,)`` float64 array per detector, one
    value per token.

    A token longer than one character (a word tokenizer's) takes the detector's value at its
    last character: what the text is doing once the token has been read.

    Args:
        acts: the activations whose text (``acts.text``, what the tokens spell) is read.
        detectors: names of registered detectors, or a mapping of names to detector functions
            (each called as ``detector(text)``); every registered detector if ``None``.
        registry: where names are looked up (default: the process-wide registry).

    Raises:
        CharseqError: a name no detector has (with a did-you-mean), a detector that does not
            return one finite value per character, tokens that do not spell the text.
    """
    if "".join(acts.tokens) != acts.text or not acts.text:
        raise CharseqError(
            "the activations' tokens do not spell their text, so detectors (which read "
            "characters) cannot be lined up with the tokens"
        )
    functions = _functions(detectors, get_registry(registry))
    ends = np.cumsum([len(token) for token in acts.tokens]) - 1  # each token's last character
    found = {}
    for name, function in functions.items():
        values = np.asarray(function(acts.text), dtype=np.float64)
        if values.shape != (len(acts.text),) or not np.isfinite(values).all():
            raise CharseqError(
                f"detector {name!r} must return one finite number per character "
                f"({len(acts.text)}); it returned an array of shape {values.shape}"
                + ("" if values.shape != (len(acts.text),) else " with NaN or infinity")
            )
        found[name] = values[np.maximum(ends, 0)]
    return found


def _functions(
    detectors: Iterable[str] | Mapping[str, Detector] | None, registry: Registry
) -> dict[str, Callable[[str], np.ndarray]]:
    """Each detector's name and a function of the text alone (registered options at their
    defaults)."""
    if isinstance(detectors, Mapping):
        return dict(detectors)
    if isinstance(detectors, str):
        detectors = [detectors]
    names = registry.names("detector") if detectors is None else list(detectors)
    functions = {}
    for name in names:
        component = registry.get("detector", name)
        options = attrs.asdict(component.options(), recurse=False)
        functions[name] = lambda text, f=component.factory, o=options: f(text, **o)
    return functions
