"""Cutting an encoded corpus into contiguous train / val / test parts."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import attrs
import numpy as np

from charseq.checks import is_number
from charseq.corpus.errors import CorpusError, CorpusTooSmallError, EmptyCorpusError
from charseq.errors import warn

__all__ = ["Splits", "split_ids"]


@attrs.frozen(eq=False)
class Splits:
    """Contiguous train / val / test parts of an encoded corpus (views of its ids, not copies).

    Attributes:
        train, val, test: the ids of each part (a part with fraction 0 is empty).
        bounds: ``{"train": [0, a], "val": [a, b], "test": [b, n]}``, JSON-ready, for the
            checkpoint.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    bounds: dict[str, list[int]]

    def __getitem__(self, name: str) -> np.ndarray:
        """The part called ``name`` (``"train"``, ``"val"`` or ``"test"``)."""
        if name not in self.bounds:
            raise CorpusError(f"no split {name!r}; the splits are 'train', 'val' and 'test'")
        return getattr(self, name)


def split_ids(ids: np.ndarray, val: float = 0.05, test: float = 0.05) -> Splits:
    """Contiguous parts of a 1-D array of ids, as :meth:`EncodedCorpus.split
    <charseq.corpus.EncodedCorpus.split>` describes."""
    n = int(len(ids))
    fractions = {"val": _fraction("val", val), "test": _fraction("test", test)}
    if fractions["val"] + fractions["test"] >= 1:
        raise CorpusError(
            f"val + test must be below 1 so that some text is left to train on; "
            f"got val={val}, test={test}"
        )
    if n == 0:
        raise EmptyCorpusError("the corpus is empty: there is nothing to split")
    train_end = math.floor(n * (1 - fractions["val"] - fractions["test"]))
    val_end = math.floor(n * (1 - fractions["test"]))
    sizes = {"train": train_end, "val": val_end - train_end, "test": n - val_end}
    grown = []
    for name in ("val", "test"):
        if fractions[name] > 0 and sizes[name] < 2:
            sizes["train"] -= 2 - sizes[name]
            sizes[name] = 2
            grown.append(name)
    if sizes["train"] < 2:
        needed = 2 + sum(2 for f in fractions.values() if f > 0)
        raise CorpusTooSmallError(
            f"the corpus has {n} tokens: too few for a training part of at least 2 tokens plus "
            f"val ({val}) and test ({test}) parts of at least 2 each; it needs at least "
            f"{needed} tokens, or set train.val_fraction = 0 and train.test_fraction = 0"
        )
    if grown:
        warn(
            f"the corpus has only {n} tokens; the {' and '.join(grown)} part(s) get 2 tokens, "
            "the least that can be evaluated"
        )
    a = sizes["train"]
    b = a + sizes["val"]
    bounds = {"train": [0, a], "val": [a, b], "test": [b, n]}
    return Splits(train=ids[:a], val=ids[a:b], test=ids[b:], bounds=bounds)


def _fraction(name: str, value: Any) -> Fraction:
    if not is_number(value):
        raise CorpusError(f"{name} must be a number in [0, 1), got {value!r}")
    if not 0 <= value < 1:
        raise CorpusError(f"{name} must be in [0, 1), got {value!r}")
    return Fraction(str(value)) if isinstance(value, float) else Fraction(value)
