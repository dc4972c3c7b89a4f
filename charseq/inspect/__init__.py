"""Seeing inside a model: what each unit of each layer does on a text.

- :func:`record_activations` / :meth:`charseq.Pipeline.activations`: every unit of every layer's
  output, state and internals (gates), and the next-token distribution, per token
  (:class:`Activations`).
- :func:`detect`: feature detectors, what the text is doing at each character (inside a
  string, position in the line); a plugin kind of its own (``charseq_register_detectors``).
- :func:`find_units`: for each detector, the units that track it best (:class:`Finding`).
- :func:`gate_saturation`: how often each gate is shut or wide open (:class:`GateSaturation`).
- :mod:`charseq.inspect.report`: all of it in one offline HTML page (``charseq inspect --html``).
- :mod:`charseq.inspect.curves`: a run's training curves from its ``metrics.jsonl``
  (``charseq plot``; needs matplotlib).
"""

from charseq.inspect.activations import Activations, Trace, record_activations
from charseq.inspect.detectors import Detector, detect
from charseq.inspect.gates import GateSaturation, gate_saturation
from charseq.inspect.search import Finding, find_units

__all__ = [
    "Activations",
    "Detector",
    "Finding",
    "GateSaturation",
    "Trace",
    "detect",
    "find_units",
    "gate_saturation",
    "record_activations",
]
