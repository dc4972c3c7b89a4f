"""Building a pipeline's components from its spec: each through the factory its plugin
registered, with the spec section's options as keyword arguments.

These are the functions :class:`~charseq.Pipeline` builds with, public so that code that
composes the parts by hand (``docs/explanation/architecture.md``) calls them instead of
re-deriving them::

    registry = get_registry()
    tokenizer = build_tokenizer(spec, registry)
    tokenizer.fit(text)
    model = build_model(spec, registry, tokenizer.vocab_size)
    optimizer = build_optimizer(spec, registry, model.parameters())
    sampler = build_sampler(spec.sampler, registry)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from charseq.interfaces import Cell, Sampler, Tokenizer
from charseq.model import CharModel
from charseq.registry import Registry
from charseq.spec import ComponentSpec, PipelineSpec


def as_spec(
    spec: PipelineSpec | Mapping[str, Any] | str | Path | None, registry: Registry
) -> PipelineSpec:
    """``spec`` validated as a :class:`PipelineSpec`: a spec object, a dict, a ``.toml`` /
    ``.json`` file path, or ``None`` for the defaults."""
    if spec is None:
        return PipelineSpec.from_dict({}, registry)
    if isinstance(spec, Mapping):
        return PipelineSpec.from_dict(spec, registry)
    if isinstance(spec, str | Path):
        return PipelineSpec.from_file(spec, registry)
    if not isinstance(spec, PipelineSpec):
        raise TypeError(f"spec must be a PipelineSpec, dict or path, got {type(spec).__name__}")
    return spec


def factory_kwargs(options: Any) -> dict[str, Any]:
    """A spec section's options instance as the keyword arguments of its component's factory."""
    return attrs.asdict(options, recurse=False)


def build_component(registry: Registry, kind: str, section: ComponentSpec, *args: Any) -> Any:
    """The ``kind`` component a spec section names, built by its factory from ``args`` and the
    section's options."""
    component = registry.get(kind, section.name)
    return component.factory(*args, **factory_kwargs(section.options))


def build_tokenizer(spec: PipelineSpec, registry: Registry) -> Tokenizer:
    """The spec's tokenizer, not fitted yet."""
    return build_component(registry, "tokenizer", spec.tokenizer)


def cell_factory(spec: PipelineSpec, registry: Registry) -> Callable[[int, int], Cell]:
    """The spec's cell factory with its options bound: ``factory(input_size, hidden_size)``."""
    cell = spec.cell
    return functools.partial(
        registry.get("cell", cell.name).factory, **factory_kwargs(cell.options)
    )


def build_cells(spec: PipelineSpec, registry: Registry) -> list[Cell]:
    """The spec's ``cell.num_layers`` cells, freshly initialised: the first takes the
    embedding's size, each other the hidden size below it."""
    layout = spec.cell.layout
    make_cell = cell_factory(spec, registry)
    sizes = [spec.model.embedding_size] + [layout.hidden_size] * layout.num_layers
    return [make_cell(input_size, layout.hidden_size) for input_size in sizes[:-1]]


def build_model(spec: PipelineSpec, registry: Registry, vocab_size: int) -> CharModel:
    """A freshly initialised model for a vocabulary of ``vocab_size`` tokens: embedding,
    ``cell.num_layers`` cells, head; on torch's current default device."""
    return CharModel(
        vocab_size,
        spec.model.embedding_size,
        build_cells(spec, registry),
        spec.cell.layout.dropout,
        spec.model.embedding_dropout,
        weight_drop=spec.cell.layout.weight_drop,
        dropout_kind=spec.model.dropout_kind,
    )


def build_optimizer(
    spec: PipelineSpec, registry: Registry, parameters: Iterable[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    """The spec's optimizer over ``parameters``."""
    return build_component(registry, "optimizer", spec.optimizer, parameters)


def build_sampler(section: ComponentSpec, registry: Registry) -> Sampler:
    """The sampler a spec's ``sampler`` section names (``spec.sampler``, or a section parsed
    from a table)."""
    return build_component(registry, "sampler", section)
