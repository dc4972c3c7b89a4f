"""The interpretable-unit search: for each feature detector, the units that track it best.

:func:`find_units` correlates every unit of every recorded tensor (outputs, states, internals,
all layers) with every detector over one text, and keeps the best few per detector by the size
of their Pearson correlation. For an indicator (a 0/1 detector) it also finds the best
threshold on the unit alone. Beside each result it reports the chance level: the correlation a
unit reaches with the detector without having learned it, so a reader can tell a finding from
luck and from the plain statistics of the input.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs
import numpy as np

from charseq.inspect.activations import Activations
from charseq.inspect.detectors import Detector, detect
from charseq.registry import Registry

__all__ = [
    "CHANCE_SHIFTS",
    "CONTROL_MEMORY",
    "CONTROL_UNITS",
    "Finding",
    "find_units",
    "threshold_accuracy",
]

CHANCE_SHIFTS = 16
"""How many shifted copies of each detector the chance level tries (see :func:`find_units`)."""

CONTROL_UNITS = 1024
"""How many units the untrained control of :func:`find_units` has."""

CONTROL_MEMORY = 30
"""The longest memory, in tokens, of the control's units (the shortest is 1)."""

_CHUNK = 1 << 24  # values in one block of units (128 MB while it is standardised in float64)


@attrs.frozen
class Finding:
    """One unit that tracks one detector, as :func:`find_units` found it.

    Attributes:
        detector: the detector's name (``"in-quotes"``).
        unit: the unit, ``"layer:name:index"`` (``"1:c:42"``; see
            :meth:`Activations.unit <charseq.inspect.Activations.unit>`).
        correlation: Pearson's correlation of the unit with the detector over the text, signed.
        accuracy: for a 0/1 detector, the fraction of tokens the unit alone classifies right
            with its best threshold: the detector is predicted 1 where the unit is at or above
            ``threshold`` for a positive correlation, below it for a negative one. ``None`` for
            a detector that counts.
        threshold: that threshold (``None`` with ``accuracy``).
        chance: the size of correlation some unit reaches with this detector by chance on this
            text (see :func:`find_units`); a finding whose ``abs(correlation)`` is not above it
            says nothing.
    """

    detector: str
    unit: str
    correlation: float
    accuracy: float | None
    threshold: float | None
    chance: float

    @property
    def above_chance(self) -> bool:
        """Whether the correlation is larger in size than the chance level."""
        return abs(self.correlation) > self.chance

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (``above_chance`` included)."""
        return {**attrs.asdict(self), "above_chance": self.above_chance}


def find_units(
    acts: Activations,
    detectors: Iterable[str] | Mapping[str, Detector] | None = None,
    top: int = 3,
    *,
    registry: Registry | None = None,
) -> dict[str, list[Finding]]:
    """The ``top`` units that track each detector best over the text of ``acts``.

    Every unit of every trace (outputs, states and internals of every layer) is correlated with
    each detector (Pearson, on the detector's value per token, see
    :func:`~charseq.inspect.detect`), and the units are ranked by the size of the correlation,
    largest first. A unit or detector that is constant over the text correlates 0.

    The chance level is the larger of two correlations a unit reaches without having learned
    the detector:

    - *Luck.* Neighbouring characters are alike (a string goes on for many characters, a unit
      changes slowly), so a text of T characters holds far fewer than T independent
      observations, and a unit correlates with an unrelated series more than ``1/sqrt(T)``
      suggests. Each detector is shifted circularly along the text by :data:`CHANCE_SHIFTS`
      large offsets (spread evenly between 1/17 and 16/17 of its length), which keeps its own
      runs and rhythm but breaks its alignment with the units; luck is the largest size of
      correlation any unit reaches with any shifted copy. That is a maximum over more tries
      (shifts times units) than the search makes.
    - *The input alone.* A detector goes with the characters themselves (a string holds more
      letters than code does), so even an untrained network has units that follow it. The
      control stands for one: :data:`CONTROL_UNITS` units, each a running average (memory of
      1 to :data:`CONTROL_MEMORY` tokens) of a random value per token, fixed by a seed. Its
      best size of correlation with the (unshifted) detector is what reading the text,
      without learning, gives. charseq's tests check that the built-in cells, untrained, stay
      below it on ``in-quotes``.

    Detectors of the last character or two (``in-word``, ``upper``, ``digit``,
    ``line-start``) are followed by any network that sees its input, trained or not, often
    beyond the chance level: a high correlation there says only that the characters reach the
    unit.

    Args:
        acts: what a model computed on a text (:meth:`charseq.Pipeline.activations`).
        detectors: names of registered detectors, or a mapping of names to functions of the
            text; every registered detector if ``None``.
        top: how many units to keep per detector.
        registry: where detector names are looked up (default: the process-wide registry).

    Returns:
        Each detector's name and its best ``top`` :class:`Finding`, best first.
    """
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    targets = detect(acts, detectors, registry=registry)
    if not targets:
        return {}
    names = list(targets)
    values = np.stack([targets[name] for name in names])  # (D, T)
    length = values.shape[1]
    shifts = _shifts(length)
    shifted = np.array([np.roll(row, s) for row in values for s in shifts])  # (D * S, T)
    shifted = shifted.reshape(len(names) * len(shifts), length)  # (0, T) for a 1-token text
    wanted = _standardise(np.vstack([values, shifted]).T).T  # (D + D * S, T)
    chance = np.zeros(len(names))
    for block in _control_blocks(acts):
        control = wanted[: len(names)] @ _standardise(block) / length  # (D, u)
        chance = np.maximum(chance, np.abs(control).max(axis=1))
    units: list[str] = []
    blocks: list[np.ndarray] = []
    for block_units, block in _unit_blocks(acts):
        r = wanted @ _standardise(block) / length  # (D + D*S, T) @ (T, u) -> (D + D*S, u)
        blocks.append(r[: len(names)])
        luck = np.abs(r[len(names) :]).reshape(len(names), -1)  # (D, S * u)
        chance = np.maximum(chance, luck.max(axis=1, initial=0.0))
        units += block_units
    correlations = np.clip(np.hstack(blocks), -1.0, 1.0)  # (D, U)
    found = {}
    for d, name in enumerate(names):
        binary = bool(np.isin(values[d], (0.0, 1.0)).all())
        best = np.argsort(-np.abs(correlations[d]), kind="stable")[:top]
        found[name] = [
            _finding(acts, name, units[u], correlations[d, u], values[d], binary, chance[d])
            for u in best
        ]
    return found


def _finding(
    acts: Activations,
    detector: str,
    unit: str,
    correlation: float,
    target: np.ndarray,
    binary: bool,
    chance: float,
) -> Finding:
    accuracy = threshold = None
    if binary:
        accuracy, threshold = threshold_accuracy(acts.unit(unit), target, above=correlation >= 0)
    return Finding(detector, unit, float(correlation), accuracy, threshold, float(chance))


def threshold_accuracy(
    unit: np.ndarray, target: np.ndarray, *, above: bool = True
) -> tuple[float, float]:
    """The best accuracy of one threshold on ``unit`` as a classifier of the 0/1 ``target``,
    and that threshold.

    With ``above``, ``unit >= threshold`` predicts 1; otherwise ``unit < threshold`` does. The
    values are sorted once; every cut between two different values is tried (the threshold is
    their midpoint), and so are the cuts before all and after all of them.
    """
    order = np.argsort(unit, kind="stable")
    ordered = unit[order].astype(np.float64)
    positives_below = np.concatenate([[0], np.cumsum(target[order])])  # before cut i, i = 0..T
    length, positives = len(unit), positives_below[-1]
    cut = np.arange(length + 1)
    # "at or above the cut predicts 1": right below the cut are the negatives, above the positives
    right = (cut - positives_below) + (positives - positives_below)
    if not above:
        right = length - right
    possible = np.concatenate([[True], ordered[1:] != ordered[:-1], [True]])
    best = int(np.argmax(np.where(possible, right, -1)))
    if best == 0:
        threshold = ordered[0]
    elif best == length:
        threshold = float(np.nextafter(ordered[-1], np.inf))
    else:
        threshold = (ordered[best - 1] + ordered[best]) / 2
    return float(right[best] / length), float(threshold)


def _shifts(length: int) -> list[int]:
    """The offsets the chance level shifts each detector by: large, spread along the text."""
    offsets = {round(length * (k + 1) / (CHANCE_SHIFTS + 1)) for k in range(CHANCE_SHIFTS)}
    return sorted(offsets - {0, length})


def _control_blocks(acts: Activations) -> Iterator[np.ndarray]:
    """The untrained control reading the tokens of ``acts``, in ``(T, u)`` blocks of its
    :data:`CONTROL_UNITS` units: each unit a running average, with its own memory, of a random
    value per token (the same values for every text: the seed is fixed)."""
    per_token = np.random.default_rng(0).standard_normal((len(acts.vocab), CONTROL_UNITS))
    memory = np.geomspace(1, CONTROL_MEMORY, CONTROL_UNITS)  # in tokens
    keep = np.exp(-1 / memory).astype(np.float32)  # of the average, at each token
    width = _block_width(len(acts))
    for start in range(0, CONTROL_UNITS, width):
        kept = keep[start : start + width]
        values = per_token[acts.ids, start : start + width].astype(np.float32)  # (T, u)
        for t in range(1, len(values)):
            values[t] = kept * values[t - 1] + (1 - kept) * values[t]
        yield values


def _standardise(columns: np.ndarray) -> np.ndarray:
    """Each column centred and scaled to unit variance (float32). A constant column is zeros,
    and so is one that varies only by float32 rounding (a gate stuck at 1)."""
    columns = np.asarray(columns, dtype=np.float64)
    centred = columns - columns.mean(axis=0)
    scale = np.sqrt((centred**2).mean(axis=0))
    scale[scale <= 1e-6 * np.abs(columns).max(axis=0, initial=0.0)] = np.inf  # -> zeros
    return (centred / scale).astype(np.float32)


def _unit_blocks(acts: Activations) -> Iterator[tuple[list[str], np.ndarray]]:
    """Every trace's units, in blocks of columns small enough to standardise at once: the
    units' names and their ``(T, u)`` values."""
    width = _block_width(len(acts))
    for trace in acts.traces:
        for start in range(0, trace.units, width):
            stop = min(start + width, trace.units)
            names = [f"{trace.key}:{i}" for i in range(start, stop)]
            yield names, trace.values[:, start:stop]


def _block_width(length: int) -> int:
    """How many columns of ``length`` rows make one block."""
    return max(1, _CHUNK // max(length, 1))
