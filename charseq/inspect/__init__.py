"""Seeing inside a model: what each unit of each layer does on a text.

- :func:`record_activations` / :meth:`charseq.Pipeline.activations`: every unit of every layer's
  output, state and internals (gates), and the next-token distribution, per token
  (:class:`Activations`).
"""

from charseq.inspect.activations import Activations, Trace, record_activations

__all__ = ["Activations", "Trace", "record_activations"]
