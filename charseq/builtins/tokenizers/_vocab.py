"""What the built-in tokenizers share: the unknown-text policy, a fitted vocabulary, and the
checks and messages of encoding, decoding and restoring a state."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
import numpy as np

from charseq.checks import describe_char
from charseq.errors import TokenizerError
from charseq.interfaces import UNKNOWN_POLICIES, Tokenizer
from charseq.options import OptionError, build_options

_MAX_LISTED = 8  # unknown characters named in an error message
MAX_POSITIONS = 5  # positions named per unknown character

UNKNOWN_HELP = (
    "what to do with text outside the vocabulary: 'error' (raise), 'skip' (drop it) "
    "or 'replace' (map it to the replacement token)"
)


class NotFittedError(TokenizerError):
    """The tokenizer has no vocabulary yet: call ``fit(text)`` (or ``load_state_dict``) first."""


def unknown_policy(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """The validator of an ``unknown`` option: one of ``"error"``, ``"skip"``, ``"replace"``."""
    if value not in UNKNOWN_POLICIES:
        listed = ", ".join(map(repr, UNKNOWN_POLICIES))
        raise OptionError(attribute.name, f"must be one of {listed}, got {value!r}")


def as_id_array(ids: Iterable[int]) -> np.ndarray:
    """Any iterable of ints (a list, a NumPy array, a torch tensor) as a 1-D int64 array."""
    if hasattr(ids, "tolist"):  # torch tensors and numpy arrays
        ids = ids.tolist()
    elif not isinstance(ids, list | tuple):
        ids = list(ids)
    array = np.asarray(ids, dtype=np.int64)
    if array.ndim != 1:
        raise TokenizerError(f"decode takes a 1-D sequence of ids, got shape {array.shape}")
    return array


def check_ids(array: np.ndarray, size: int) -> None:
    if array.size and (array.min() < 0 or array.max() >= size):
        bad = int(array[(array < 0) | (array >= size)][0])
        raise TokenizerError(f"id {bad} is outside the vocabulary (ids 0 to {size - 1})")


def unknown_message(
    what: str, unknown: dict[str, list[int]], counts: dict[str, int], remedy: str
) -> str:
    """'the text has 2 characters outside the vocabulary: 'é' (U+00E9) at position 3; ...'."""
    parts = []
    for token in list(unknown)[:_MAX_LISTED]:
        positions = unknown[token]
        where = ", ".join(map(str, positions))
        more = counts[token] - len(positions)
        if more:
            where += f" and {more} more"
        label = "position" if counts[token] == 1 else "positions"
        described = describe_char(token) if len(token) == 1 else repr(token)
        parts.append(f"{described} at {label} {where}")
    if len(unknown) > _MAX_LISTED:
        parts.append(f"and {len(unknown) - _MAX_LISTED} more")
    plural = "" if len(unknown) == 1 else "s"
    return (
        f"the text has {len(unknown)} {what}{plural} outside the vocabulary: "
        + "; ".join(parts)
        + f". {remedy}"
    )


def check_state(state: Any, kind: str) -> None:
    if not isinstance(state, dict):
        raise TokenizerError(f"a {kind!r} tokenizer state is a dict, got {type(state).__name__}")
    found = state.get("type")
    if found != kind:
        raise TokenizerError(
            f"this state is for a {found!r} tokenizer, not {kind!r}; "
            "build the tokenizer the checkpoint names"
        )


def check_vocab(vocab: Any, kind: str) -> list[str]:
    if not isinstance(vocab, list) or not all(isinstance(t, str) and t for t in vocab):
        raise TokenizerError(f"a {kind!r} tokenizer state needs 'vocab': a list of strings")
    if len(set(vocab)) != len(vocab):
        raise TokenizerError(f"the {kind!r} vocabulary in this state has duplicate tokens")
    if not vocab:
        raise TokenizerError(f"the {kind!r} vocabulary in this state is empty")
    return vocab


def checked_options(cls: type, name: str, **values: Any) -> Any:
    """Validate constructor arguments through the options class (errors name ``name.option``)."""
    return build_options(cls, values, name)


def require_str(text: Any, call: str) -> None:
    if not isinstance(text, str):
        raise TokenizerError(f"{call} takes a str, got {type(text).__name__}")


class FittedVocabulary(Tokenizer):
    """A tokenizer whose vocabulary is learnt by ``fit``: ``_vocab`` is ``None`` until then.

    Subclasses set ``kind`` (named in messages), ``options_class`` (whose fields
    are attributes of the tokenizer and saved in its state) and ``_vocab`` (through their
    ``_set_vocab``).
    """

    kind: str
    options_class: type
    _vocab: tuple[str, ...] | None

    @property
    def is_fitted(self) -> bool:
        return self._vocab is not None

    @property
    def vocab(self) -> tuple[str, ...]:
        """The tokens, id order."""
        return self._fitted_vocab()

    @property
    def vocab_size(self) -> int:
        return len(self._fitted_vocab())

    def _fitted_vocab(self) -> tuple[str, ...]:
        if self._vocab is None:
            raise NotFittedError(
                f"the {self.kind!r} tokenizer has no vocabulary yet: call fit(text) on the corpus "
                "first (or load_state_dict from a checkpoint)"
            )
        return self._vocab

    def _check_fit_text(self, text: Any) -> None:
        require_str(text, "fit")
        if not text:
            raise TokenizerError(f"cannot fit the {self.kind!r} tokenizer on empty text")

    def _check_encode_text(self, text: Any) -> tuple[str, ...]:
        """The fitted vocabulary, once ``text`` is known to be a str."""
        vocab = self._fitted_vocab()
        require_str(text, "encode")
        return vocab

    def _checked_ids(self, ids: Iterable[int]) -> np.ndarray:
        """``ids`` as a 1-D int64 array, each checked to be in the fitted vocabulary."""
        array = as_id_array(ids)
        check_ids(array, len(self._fitted_vocab()))
        return array

    def _option_values(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in attrs.fields(self.options_class)}

    def state_dict(self) -> dict[str, Any]:
        return {"type": self.kind, **self._option_values(), "vocab": list(self._fitted_vocab())}

    def _read_state(self, state: Any) -> tuple[Any, list[str]]:
        """The options and the vocabulary a :meth:`state_dict` holds, checked (an option the
        state leaves out keeps this tokenizer's value); nothing is changed yet."""
        check_state(state, self.kind)
        saved = {name: state.get(name, value) for name, value in self._option_values().items()}
        options = checked_options(self.options_class, self.kind, **saved)
        return options, check_vocab(state.get("vocab"), self.kind)

    def _set_options(self, options: Any) -> None:
        for name in self._option_values():
            setattr(self, name, getattr(options, name))
