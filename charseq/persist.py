"""A pipeline saved and loaded: the manifest it writes beside its weights, and rebuilding a
pipeline from a checkpoint, checking everything the checkpoint says before it is used.

A checkpoint's tokenizer and cell plugins must be installed to load it; its optimizer and
sampler plugins need not be (sampling and evaluating use neither): the defaults stand in
(:class:`~charseq.plugin_records.StandIns`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from charseq import __version__
from charseq.assemble import build_model, cell_factory
from charseq.checkpoint import (
    MODEL_FILE,
    CheckpointError,
    check_latest_of_its_run,
    is_training_checkpoint,
    read_manifest,
    recover_interrupted_save,
    resolve_checkpoint,
    write_checkpoint,
)
from charseq.checks import is_int
from charseq.classify.model import build_classifier
from charseq.corpus.arguments import NORMALIZATIONS
from charseq.devices import resolve_device
from charseq.errors import SpecError
from charseq.interfaces import KINDS
from charseq.plugin_records import (
    OPTIONAL_FOR_SAMPLING,
    StandIns,
    describe_owner,
    missing_plugins,
    pinned_spec,
    refuse_missing,
    warn_version_drift,
)
from charseq.registry import Registry
from charseq.spec import PipelineSpec
from charseq.stored_weights import check_stored_weights
from charseq.training_run import training_state

if TYPE_CHECKING:
    from charseq.pipeline import Pipeline


def pipeline_manifest(pipe: Pipeline) -> dict[str, Any]:
    """What a checkpoint of ``pipe`` records besides tensors (a classifier's class names too)."""
    manifest = {
        "charseq_version": __version__,
        "spec": pipe.stand_ins.recorded_spec(pipe.spec),
        "tokenizer": pipe.tokenizer.state_dict(),
        "vocab_size": pipe.tokenizer.vocab_size,
        "step": pipe.steps_trained,
        "plugins": pipe.stand_ins.owners(pipe.spec, pipe.registry),
        "normalize": pipe.normalize,
    }
    if pipe.classes is not None:
        manifest["classes"] = list(pipe.classes)
    return manifest


def _model_builder(
    spec: PipelineSpec, registry: Registry, vocab_size: int, classes: tuple[str, ...] | None
) -> Callable[[], torch.nn.Module]:
    """What builds a checkpoint's model: its task's (a classifier's needs its classes)."""
    if spec.task.name == "classify":
        if classes is None:
            raise CheckpointError("a classifier's checkpoint must record its classes")
        return functools.partial(
            build_classifier, spec, registry, vocab_size, len(classes),
            pooling=spec.task.pooling, dropout=spec.task.dropout,
        )  # fmt: skip
    return functools.partial(build_model, spec, registry, vocab_size)


def save_pipeline(pipe: Pipeline, model: torch.nn.Module, directory: str | Path) -> Path:
    """Write ``pipe``'s weights-only checkpoint to ``directory``; never over a training
    checkpoint."""
    if is_training_checkpoint(Path(directory)):
        raise CheckpointError(
            f"{directory} is a training checkpoint (it resumes a run); save writes weights "
            "only and would replace it: save to another directory"
        )
    return write_checkpoint(directory, {"model": model.state_dict()}, pipeline_manifest(pipe))


def load_pipeline(
    cls: type[Pipeline],
    path: Path,
    manifest: dict[str, Any],
    weights: dict[str, torch.Tensor],
    *,
    registry: Registry,
    device: torch.device | str | None = None,
) -> Pipeline:
    """A ``cls`` pipeline from a checkpoint already read: its directory, manifest and weights
    (:func:`~charseq.checkpoint.read_checkpoint`, one consistent read)."""
    check_pipeline_fields(path, manifest)
    missing = missing_plugins(registry, manifest)
    refuse_missing(registry, {k: v for k, v in missing.items() if k not in OPTIONAL_FOR_SAMPLING})
    data = pinned_spec(registry, manifest)
    for kind in missing:  # an optimizer or sampler: stand in with the default, and say so
        data[kind] = None
    try:
        spec = PipelineSpec.from_dict(data, registry)
    except SpecError as error:
        raise CheckpointError(f"{path}: its spec no longer validates: {error}") from None
    pipe = cls.from_spec(spec, registry=registry, device="cpu")
    warn_version_drift(path, registry, manifest, missing)
    pipe.stand_ins = StandIns.from_checkpoint(manifest, spec, missing)
    pipe.stand_ins.warn_loaded(path)
    try:
        pipe.tokenizer.load_state_dict(manifest["tokenizer"])
    except Exception as error:  # a plugin's own error: say whose state it was
        owner = manifest.get("plugins", {}).get("tokenizer", {})
        raise CheckpointError(
            f"{path}: tokenizer {spec.tokenizer.name!r} could not load its state "
            f"({type(error).__name__}: {error}); it was written by {describe_owner(owner)}, and "
            f"{registry.get('tokenizer', spec.tokenizer.name).owner} is installed"
        ) from error
    classes = _recorded_classes(path, manifest)
    build = _model_builder(spec, registry, pipe.tokenizer.vocab_size, classes)
    check_stored_weights(  # before anything the spec implies is allocated
        path / MODEL_FILE, weights, spec, cell_factory(spec, registry), build
    )
    model = build().to(pipe.device)
    pipe.classes = classes
    if classes is not None:
        corpus = manifest.get("corpus") or {}
        pipe.data_hash = corpus.get("hash") if isinstance(corpus.get("hash"), str) else None
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit the spec: {error}") from None
    pipe.steps_trained = int(manifest.get("step", 0))
    pipe.normalize = manifest.get("normalize", manifest.get("corpus", {}).get("normalize"))
    pipe.device = resolve_device(device)
    pipe.model = model.to(pipe.device)
    return pipe


def _recorded_classes(path: Path, manifest: Mapping[str, Any]) -> tuple[str, ...] | None:
    classes = manifest.get("classes")
    if classes is None:
        return None
    if not (
        isinstance(classes, list)
        and len(classes) >= 2
        and all(isinstance(c, str) for c in classes)
        and len(set(classes)) == len(classes)
    ):
        raise CheckpointError(
            f"{path}: its manifest's classes must be a list of 2 or more different strings"
        )
    return tuple(classes)


def is_classifier(checkpoint: str | Path) -> bool:
    """Whether ``checkpoint`` (a checkpoint or run directory) is a classifier's: its task, read
    from its manifest alone (``False`` when it cannot be read: loading it says why)."""
    try:
        spec = read_manifest(resolve_checkpoint(checkpoint)).get("spec")
    except (CheckpointError, OSError):
        return False
    task = spec.get("task") if isinstance(spec, dict) else None
    return isinstance(task, dict) and task.get("name") == "classify"


def resumable_checkpoint(checkpoint: str | Path, registry: Registry) -> tuple[Path, dict[str, Any]]:
    """The checkpoint a run resumes from (a checkpoint or run directory) and its manifest, once
    it is known to resume: a pipeline's, with its training state, the latest of its run, and
    every plugin it names installed (training needs all)."""
    recover_interrupted_save(checkpoint)  # a run killed mid-save is whole again
    path = resolve_checkpoint(checkpoint)
    manifest = read_manifest(path)
    check_pipeline_fields(path, manifest)
    training_state(path, manifest)
    check_latest_of_its_run(path, manifest)
    refuse_missing(registry, missing_plugins(registry, manifest))
    return path, manifest


def check_pipeline_fields(path: Path, manifest: Mapping[str, Any]) -> None:
    """Refuse a manifest whose pipeline fields (written by :func:`pipeline_manifest`) are
    missing or of the wrong kind: a hand edit, or a checkpoint that is not a pipeline's."""
    problems = []
    if not isinstance(manifest.get("spec"), dict):
        problems.append("no spec (a table)")
    if not isinstance(manifest.get("tokenizer"), dict):
        problems.append("no tokenizer state (a table)")
    step = manifest.get("step", 0)
    if not is_int(step) or step < 0:
        problems.append(f"step {step!r} (an int >= 0 expected)")
    normalize = manifest.get("normalize")
    if normalize not in (None, *NORMALIZATIONS):
        problems.append(f"normalize {normalize!r} (null, 'NFC' or 'NFKC' expected)")
    if not isinstance(manifest.get("corpus", {}), dict):
        problems.append("corpus that is not a table")
    plugins = manifest.get("plugins", {})
    if not isinstance(plugins, dict) or not all(
        kind in KINDS
        and isinstance(owner, dict)
        and all(isinstance(v, str) or v is None for v in owner.values())
        for kind, owner in plugins.items()
    ):
        problems.append(
            f"plugins (a table of {', '.join(KINDS)}, each a table of strings, expected)"
        )
    if problems:
        raise CheckpointError(
            f"{path}: its manifest is not a charseq pipeline's: {'; '.join(problems)}"
        )
