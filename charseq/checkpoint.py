"""Checkpoints: a directory with ``model.safetensors`` and ``manifest.json``. Loading runs no code.

The manifest holds the format version, the charseq version, the full spec, the tokenizer's state
and which distribution provided each component, so a checkpoint says how to rebuild itself. A
directory is written under a temporary name and renamed into place: a crash during a save leaves
the previous checkpoint as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from charseq.errors import CharseqError

FORMAT = "charseq-checkpoint"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"


class CheckpointError(CharseqError):
    """A checkpoint is missing, incomplete, of an unknown format, or needs a missing plugin."""


def write_checkpoint(directory: str | Path, model: nn.Module, manifest: dict[str, Any]) -> Path:
    """Write ``model``'s weights and ``manifest`` to ``directory`` atomically; returns the path."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        safetensors.torch.save_file(tensors, staging / MODEL_FILE, metadata={"format": FORMAT})
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest}
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
        for name in (MODEL_FILE, MANIFEST_FILE):
            _fsync(staging / name)
        _swap_into_place(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of the checkpoint in ``directory``, checked for format and version."""
    directory = Path(directory)
    path = directory / MANIFEST_FILE
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such checkpoint directory")
    if not path.is_file():
        raise CheckpointError(f"{directory}: not a charseq checkpoint (no {MANIFEST_FILE})")
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: unreadable manifest: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a charseq checkpoint manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is newer than this charseq reads "
            f"({FORMAT_VERSION}); upgrade charseq"
        )
    return manifest


def read_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of the checkpoint in ``directory``, on the CPU."""
    path = Path(directory) / MODEL_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: checkpoint has no {MODEL_FILE}")
    try:
        return safetensors.torch.load_file(path, device="cpu")
    except Exception as error:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{path}: unreadable weights: {error}") from None


def _fsync(path: Path) -> None:
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def _swap_into_place(staging: Path, directory: Path) -> None:
    """Rename ``staging`` to ``directory``; an existing ``directory`` is replaced only after."""
    if not directory.exists():
        os.replace(staging, directory)
        return
    if not (directory / MANIFEST_FILE).is_file():
        raise CheckpointError(
            f"{directory} exists and is not a charseq checkpoint; refusing to overwrite it"
        )
    old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=directory.parent))
    os.replace(directory, old / "previous")
    try:
        os.replace(staging, directory)
    except BaseException:
        os.replace(old / "previous", directory)
        raise
    shutil.rmtree(old, ignore_errors=True)
