"""The hook specifications: one hook per plugin kind.

A plugin is a module (or any object) with functions marked ``@charseq.hookimpl`` whose names
are the hooks below, found through the ``charseq`` entry-point group::

    [project.entry-points.charseq]
    mgu = "charseq_mgu"

Each hook receives a :class:`~charseq.registry.Registrar` bound to one kind and to the plugin
that owns what it adds, so every component knows its distribution and version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from charseq.registry import Registrar

PROJECT = "charseq"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def charseq_register_tokenizers(registry: Registrar) -> None:
    """Register tokenizers: ``registry.add(name, factory, options=OptionsClass)``.

    ``factory(**options)`` returns a :class:`charseq.Tokenizer`.

    .. versionadded:: 0.1
    """


@hookspec
def charseq_register_cells(registry: Registrar) -> None:
    """Register recurrent cells: ``registry.add(name, factory, options=OptionsClass)``.

    ``factory(input_size, hidden_size, **options)`` returns a :class:`charseq.Cell`.

    .. versionadded:: 0.1
    """


@hookspec
def charseq_register_optimizers(registry: Registrar) -> None:
    """Register optimizers: ``registry.add(name, factory, options=OptionsClass)``.

    ``factory(parameters, **options)`` returns a ``torch.optim.Optimizer``.

    .. versionadded:: 0.1
    """


@hookspec
def charseq_register_samplers(registry: Registrar) -> None:
    """Register samplers (decoding strategies): ``registry.add(name, factory, options=...)``.

    ``factory(**options)`` returns a :class:`charseq.Sampler`.

    .. versionadded:: 0.1
    """


@hookspec
def charseq_register_constraints(registry: Registrar) -> None:
    """Register generation constraints: ``registry.add(name, factory, options=OptionsClass)``.

    ``factory(**options)`` returns a :class:`charseq.constraints.Constraint`; a caller names it
    in ``Pipeline.generate(..., constraints=[name or table])`` and ``charseq sample
    --constraint``.

    .. versionadded:: 0.1
    """


@hookspec
def charseq_register_detectors(registry: Registrar) -> None:
    """Register feature detectors: ``registry.add(name, detector, options=OptionsClass)``.

    ``detector(text, **options)`` returns a float array with one value per character of
    ``text``: 0 or 1 for an indicator (inside a string), a count for a quantity (nesting depth),
    each describing the text as read up to and including that character.
    :func:`charseq.inspect.find_units` looks for the units that track each one.

    .. versionadded:: 0.1
    """


HOOKS = {
    "tokenizer": "charseq_register_tokenizers",
    "cell": "charseq_register_cells",
    "optimizer": "charseq_register_optimizers",
    "sampler": "charseq_register_samplers",
    "constraint": "charseq_register_constraints",
    "detector": "charseq_register_detectors",
}
"""Which hook registers each kind: the pipeline's kinds (:data:`charseq.interfaces.KINDS`),
then the kinds a pipeline does not use (constraints, for generation; detectors, for
:mod:`charseq.inspect`)."""
