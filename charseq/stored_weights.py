"""Checking a checkpoint's stored weights against the model its spec implies, before building it.

A manifest is small and its spec says how big a model to build: ``num_layers = 20000`` or a huge
``hidden_size`` in a 5 KB manifest would allocate gigabytes before ``load_state_dict`` noticed
that the weights do not fit. So the spec's model is first measured against the tensors actually
stored: a cheap bound on the number of layers (each layer of a cell with parameters stores at
least one tensor), then the model built on PyTorch's ``meta`` device (shapes, no memory) and
compared name by name, shape by shape and dtype by dtype.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from charseq.checkpoint import MANIFEST_FILE, CheckpointError
from charseq.checkpoint.state import check_tensors
from charseq.spec import PipelineSpec

_LAYER = re.compile(r"stack\.cells\.(\d+)\.")
_FIRST = ("embedding.weight", "head.weight", "head.bias")
"""Checked first: their shapes say which of the spec's sizes is wrong."""
_META_FAILURES = (RuntimeError, NotImplementedError, TypeError, ValueError, AttributeError)
"""What a plugin's cell may raise when built on the ``meta`` device (an operation with no meta
kernel): then the spec is checked by the real build's ``load_state_dict`` instead."""


def check_stored_weights(
    file: Path,
    stored: Mapping[str, Tensor],
    spec: PipelineSpec,
    cell: Callable[[int, int], nn.Module],
    build: Callable[[], nn.Module],
) -> None:
    """Refuse ``stored`` (the tensors of ``file``, a checkpoint's ``model.safetensors``) unless
    they are exactly the model ``spec`` implies, before any of it is allocated.

    Args:
        file: the weights' file, named in errors (with the manifest field at fault).
        stored: its tensors.
        spec: the checkpoint's spec.
        cell: builds one layer of the spec's cell, ``cell(input_size, hidden_size)``.
        build: builds the whole model; called on the ``meta`` device.

    Raises:
        CheckpointError: naming the manifest field (``spec.cell.num_layers``, ...) and the
            mismatch.
    """
    layout = spec.cell.layout
    where = f"spec.cell.num_layers ({layout.num_layers}) in {file.parent / MANIFEST_FILE}"
    try:
        with torch.device("meta"):
            per_layer = len(cell(layout.hidden_size, layout.hidden_size).state_dict())
    except _META_FAILURES:
        return
    if per_layer and (layout.num_layers - 1) * per_layer > len(stored):
        raise CheckpointError(
            f"{where} does not describe the weights in {file}: {layout.num_layers} layers of "
            f"{spec.cell.name!r} hold at least {(layout.num_layers - 1) * per_layer} tensors, "
            f"and the file holds {len(stored)}"
        )
    try:
        with torch.device("meta"):
            expected = build().state_dict()
    except _META_FAILURES:
        return
    layers = {int(m[1]) for name in stored if (m := _LAYER.match(name))}
    implied = {int(m[1]) for name in expected if (m := _LAYER.match(name))}
    if layers != implied:
        raise CheckpointError(
            f"{where} does not describe the weights in {file}, which hold {len(layers)} "
            "layers' weights"
        )
    if set(stored) != set(expected):
        check_tensors(file, stored, expected)  # raises, naming the missing and unexpected ones
    # every dtype first (a file of another dtype is wrong whatever the spec says), then the
    # shapes, those that tell which of the spec's sizes is wrong first
    check_tensors(
        file,
        stored,
        {
            n: torch.empty(stored[n].shape, dtype=t.dtype, device="meta")
            for n, t in expected.items()
        },
    )
    order = [n for n in _FIRST if n in expected] + [n for n in expected if n not in _FIRST]
    for name in order:
        if stored[name].shape != expected[name].shape:
            raise CheckpointError(
                f"{file}: tensor {name!r} has shape {list(stored[name].shape)}, where the spec's "
                f"model has {list(expected[name].shape)}: {_blame(name, spec)} in "
                f"{file.parent / MANIFEST_FILE} does not describe these weights"
            )


def _blame(name: str, spec: PipelineSpec) -> str:
    """The manifest field a tensor of the wrong shape points at."""
    if name == "embedding.weight":
        return (
            f"spec.model.embedding_size ({spec.model.embedding_size}) or the tokenizer's vocabulary"
        )
    if name.startswith("head."):
        return (
            f"spec.cell.hidden_size ({spec.cell.layout.hidden_size}) or the tokenizer's vocabulary"
        )
    return f"spec.cell ({spec.cell.name!r} and its options)"
