"""Gate statistics: how often each gate of each layer is shut or wide open.

Karpathy, Johnson and Fei-Fei (2015, "Visualizing and Understanding Recurrent Networks",
figure 3) count, for every unit of an LSTM's or GRU's gates, the fraction of characters on which
the gate is left-saturated (below 0.1: shut) and right-saturated (above 0.9: wide open). A
forget gate that is right-saturated most of the time keeps its cell for long: a unit that
remembers. :func:`gate_saturation` counts the same for any cell's gates.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from charseq.inspect.activations import Activations

__all__ = ["GateSaturation", "gate_saturation"]


@attrs.frozen(eq=False)
class GateSaturation:
    """How saturated one gate of one layer is over a text, unit by unit.

    Attributes:
        layer: the layer, 0 for the bottom one.
        gate: the internal's name (``"f"``, an LSTM's forget gate).
        left: ``(U,)`` the fraction of tokens on which each unit's gate is below ``low``.
        right: ``(U,)`` the fraction of tokens on which each unit's gate is above ``high``.
    """

    layer: int
    gate: str
    left: np.ndarray
    right: np.ndarray

    @property
    def left_mean(self) -> float:
        """The fraction of all (token, unit) pairs on which the gate is below ``low``."""
        return float(self.left.mean())

    @property
    def right_mean(self) -> float:
        """The fraction of all (token, unit) pairs on which the gate is above ``high``."""
        return float(self.right.mean())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the fields (arrays as lists) and the two means."""
        return {
            "layer": self.layer,
            "gate": self.gate,
            "left": self.left.tolist(),
            "right": self.right.tolist(),
            "left_mean": self.left_mean,
            "right_mean": self.right_mean,
        }


def gate_saturation(acts: Activations, low: float = 0.1, high: float = 0.9) -> list[GateSaturation]:
    """Left and right saturation of every gate of every layer, bottom layer first.

    A gate is an internal (a trace of role ``"internal"``) whose values all lie in [0, 1] over
    the text, as a sigmoid's do: an LSTM's ``i``, ``f`` and ``o`` and a GRU's ``r`` and ``z``,
    and a plugin cell's own gates. An LSTM's ``g`` and a GRU's ``n`` (tanh) and an RNN's
    pre-activation are not gates.

    Args:
        acts: what a model computed on a text (:meth:`charseq.Pipeline.activations`).
        low: below it a gate is left-saturated (shut).
        high: above it a gate is right-saturated (open).
    """
    if not 0 <= low < high <= 1:
        raise ValueError(f"need 0 <= low < high <= 1, got low={low}, high={high}")
    return [
        GateSaturation(
            trace.layer,
            trace.name,
            (trace.values < low).mean(axis=0),
            (trace.values > high).mean(axis=0),
        )
        for trace in acts.traces
        if trace.role == "internal" and trace.values.min() >= 0 and trace.values.max() <= 1
    ]
