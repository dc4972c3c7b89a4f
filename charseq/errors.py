"""The exceptions charseq raises on purpose, each with a message a user can act on."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CharseqError(Exception):
    """Base class of every error charseq raises on purpose."""


class SpecError(CharseqError, ValueError):
    """A spec is invalid. ``path`` names the offending entry, e.g. ``cell.hidden_size``."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class UnknownComponentError(CharseqError, LookupError):
    """No component of that kind and name is registered."""


class DuplicateComponentError(CharseqError):
    """Two plugins registered the same name in the same kind."""


class PluginLoadError(CharseqError):
    """A plugin failed to import or register.

    Entry-point plugins that fail are recorded and skipped (raised in strict mode only); a
    plugin object given to ``Registry.register`` that cannot be registered raises it.
    """


class NotInstalledError(CharseqError):
    """charseq is imported from a checkout that was never installed, so no plugin is registered."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices``, or ``""`` if none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
