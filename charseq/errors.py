"""The exceptions charseq raises on purpose, each with a message a user can act on.

Every one derives from :class:`CharseqError`. Defined here: :class:`SpecError`,
:class:`UnknownComponentError`, :class:`TokenizerError`, :class:`UnknownCharacterError`,
:class:`DuplicateComponentError`, :class:`PluginLoadError`, :class:`NotInstalledError` and
:class:`TrainingDiverged`. Defined beside the code that raises them (they are importable from
there):

- ``charseq.options.OptionError`` (a component's options are invalid; becomes a ``SpecError``);
- ``charseq.constraints.GenerationError`` (a generation request is invalid);
- ``charseq.dynamic_eval.DynamicEvalError`` (dynamic evaluation's options are invalid);
- ``charseq.model.CellContractError`` (a cell breaks the contract the model relies on);
- ``charseq.builtins.tokenizers.NotFittedError`` (a ``TokenizerError``: no vocabulary yet);
- ``charseq.checkpoint.CheckpointError``, and its ``RunLockedError`` (another process trains
  into the run) and ``charseq.corpus_record.UnreadSourcesError`` (a run's corpus would have to
  be read from the paths its manifest names);
- ``charseq.corpus.CorpusError``, and its ``SourceNotFoundError``, ``NoTextFilesError``,
  ``BinaryFileError``, ``CorpusDecodeError``, ``EmptyCorpusError`` and ``CorpusTooSmallError``.

The conformance kit's ``charseq.testing.CheckError`` and ``CheckSkipped`` are for test runners,
not users, and derive from ``AssertionError`` and ``unittest.SkipTest``.

A message that gains context on its way up (which text was being encoded, what the caller can
do) is either raised anew with the whole message, where the message is what users see
(``print(error)``, the command line's ``Error:`` line), or given the context with
``error.add_note(...)``.

Messages speak Python: an argument is named as it is passed (``files=...``, ``unknown='skip'``,
``split='val'``), never as a command-line flag, and the error says which arguments it names
(``CharseqError.argument``); the command line shows each as its flag
(``charseq.cli._errors.error_line``).
"""

from __future__ import annotations

import difflib
import os
import sys
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class CharseqError(Exception):
    """Base class of every error charseq raises on purpose.

    Attributes:
        argument: the Python argument the error is about (``"files"``), or several of them
            (``("files", "split")``), or None. The message names it in Python's terms
            (``files=...``, ``unknown='skip'``); the command line shows each such mention as
            its own flag (``--data PATH``, ``--unknown skip``).
    """

    argument: str | tuple[str, ...] | None = None

    def __init__(self, *args: object, argument: str | tuple[str, ...] | None = None) -> None:
        super().__init__(*args)
        if argument is not None:
            self.argument = argument


class SpecError(CharseqError, ValueError):
    """A spec is invalid. ``path`` names the offending entry, e.g. ``cell.hidden_size``.

    A spec with several mistakes raises one error naming them all: ``problems`` holds one
    :class:`SpecError` per mistake (just this one when there is one), and ``path`` is the first's.
    """

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        self.problems: list[SpecError] = [self]
        super().__init__(f"{path}: {message}" if path else message)

    @classmethod
    def of(cls, problems: list[SpecError]) -> SpecError:
        """One error for ``problems`` (at least one): itself when alone, else a list of them."""
        flat = [p for problem in problems for p in problem.problems]
        if len(flat) == 1:
            return flat[0]
        lines = "\n".join(f"  {problem}" for problem in flat)
        error = cls("", f"{len(flat)} problems in the spec:\n{lines}")
        error.path, error.problems = flat[0].path, flat
        return error


@contextmanager
def collecting(problems: list[SpecError]) -> Iterator[None]:
    """Append a :class:`SpecError` raised inside the block to ``problems`` and go on."""
    try:
        yield
    except SpecError as error:
        problems.append(error)


class UnknownComponentError(CharseqError, LookupError):
    """No component of that kind and name is registered."""


class TokenizerError(CharseqError, ValueError):
    """A tokenizer was misused: not fitted, fitted on nothing, given an id outside its vocabulary,
    or given a state that is not its own."""


class UnknownCharacterError(TokenizerError):
    """The text holds characters (or words) outside the vocabulary and the policy is ``"error"``.

    Raised by the built-in tokenizers; a plugin tokenizer raises it too, so that charseq can say
    where the text came from and how to get past the characters.

    Attributes:
        unknown: each unknown token mapped to its positions (character offsets) in the text.
    """

    def __init__(
        self,
        message: str,
        unknown: dict[str, list[int]],
        *,
        argument: str | tuple[str, ...] | None = None,
    ) -> None:
        super().__init__(message, argument=argument)
        self.unknown = unknown


class DuplicateComponentError(CharseqError):
    """Two plugins registered the same name in the same kind."""


class PluginLoadError(CharseqError):
    """A plugin failed to import or register.

    Entry-point plugins that fail are recorded and skipped (raised in strict mode only); a
    plugin object given to ``Registry.register`` that cannot be registered raises it.
    """


class NotInstalledError(CharseqError):
    """charseq is imported from a checkout that was never installed, so no plugin is registered."""


class TrainingDiverged(CharseqError):
    """The loss kept exploding even after the guard lowered the learning rate many times."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices``, or ``""`` if none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def deprecated_alias(owner: str, old: str, new: str, *, quiet: bool = False) -> property:
    """A property ``old`` that reads and writes attribute ``new`` of ``owner``'s instances,
    warning with a ``DeprecationWarning`` unless ``quiet`` (an old name kept without a warning
    while charseq's own callers move over)."""

    def say() -> None:
        if not quiet:
            warn(f"{owner}.{old} is deprecated: use {owner}.{new}", DeprecationWarning)

    def get(self: object) -> object:
        say()
        return getattr(self, new)

    def set_(self: object, value: object) -> None:
        say()
        setattr(self, new, value)

    return property(get, set_, doc=f"Deprecated: the older name of :attr:`{new}`.")


def warn(
    message: str,
    category: type[Warning] = UserWarning,
    *,
    argument: str | tuple[str, ...] | None = None,
) -> None:
    """``warnings.warn``, attributed to the first caller outside charseq.

    However deep in charseq the warning is raised, its file and line are the user's code that
    led there (a fixed ``stacklevel`` is right for only one call path). ``argument``: the Python
    argument(s) the message names, as ``CharseqError.argument`` (the warning carries it).
    """
    frame, level = sys._getframe(1), 2  # level 2: warn's caller
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    if argument is None:
        warnings.warn(message, category, stacklevel=level)
        return
    warning = category(message)
    warning.argument = argument  # type: ignore[attr-defined]
    warnings.warn(warning, stacklevel=level)
