"""The models a server offers: each named run loaded once, under a label.

``charseq serve runs/demo poems=runs/poems/best`` serves two models, ``demo`` (a run directory's
own name) and ``poems``. A request names a model by that label and nothing else: the server
never opens a path a request gives, so only what the command line named can be served.

A model is loaded once and shared by every request. That is safe because generation, scoring
and inspection only read the weights: each request builds its own decoder state and random
generator, gradients are off, and the model is put in eval mode here, once, so that no request's
``evaluating(model)`` block can switch another request's model back to training mode.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from charseq.checkpoint import read_checkpoint
from charseq.constraints import FORMS, Constraints, GenerationError
from charseq.errors import CharseqError
from charseq.persist import load_pipeline
from charseq.pipeline import Pipeline
from charseq.registry import get_registry

__all__ = ["ServedModel", "describe", "load_models", "parse_run", "serve_pipelines"]

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""What a model's label may be: a letter or digit, then letters, digits, ``.``, ``_``, ``-``."""


@attrs.frozen
class ServedModel:
    """One model the server offers.

    Attributes:
        name: the label requests use.
        pipe: the loaded pipeline (its model in eval mode).
        created: when its checkpoint was written, in Unix seconds (OpenAI's ``created``).
        info: what ``GET /v1/models`` says of it under ``"charseq"``.
    """

    name: str
    pipe: Pipeline
    created: int
    info: dict[str, Any]


def parse_run(argument: str) -> tuple[str, str]:
    """``name=path`` or a bare path (named after its directory) as ``(name, path)``."""
    name, sep, path = argument.partition("=")
    if not sep:
        path = argument
        resolved = Path(argument).resolve()
        # RUN/best or RUN/step-XXXXXXXX is named after its run, not "best"
        name = resolved.parent.name if (resolved / "manifest.json").is_file() else resolved.name
        if name == "":
            raise CharseqError(f"{argument!r}: name it, e.g. demo={argument}")
    if not NAME.match(name):
        raise CharseqError(
            f"{name!r} is not a usable model name (letters, digits, '.', '_', '-'; at most 64); "
            f"name it with NAME=PATH, e.g. demo={path}"
        )
    return name, path


def load_models(runs: Sequence[str], *, device: str | None = None) -> dict[str, ServedModel]:
    """Load each of ``runs`` (``path`` or ``name=path``: a run directory or a checkpoint) once.

    Raises:
        CharseqError: no runs, two with one name, or a run that does not load (its own error).
    """
    if not runs:
        raise CharseqError(
            "name the runs to serve: charseq serve RUN [RUN ...], each a run directory or a "
            "checkpoint (e.g. runs/demo after ./scripts/demo), or NAME=PATH to choose its label"
        )
    models: dict[str, ServedModel] = {}
    registry = get_registry()
    for argument in runs:
        name, path = parse_run(argument)
        if name in models:
            raise CharseqError(
                f"two runs are named {name!r}: label one with NAME=PATH, e.g. {name}2={path}"
            )
        directory, manifest, tensors = read_checkpoint(path, ["model"])
        pipe = load_pipeline(
            Pipeline, directory, manifest, tensors["model"], registry=registry, device=device
        )
        created = int(os.stat(directory / "manifest.json").st_mtime)
        models[name] = _served(name, pipe, created, manifest)
    return models


def serve_pipelines(pipelines: Mapping[str, Pipeline]) -> dict[str, ServedModel]:
    """Pipelines already in memory (a program's, a test's) as served models, by label."""
    models = {}
    for name, pipe in pipelines.items():
        if not NAME.match(name):
            raise CharseqError(f"{name!r} is not a usable model name")
        models[name] = _served(name, pipe, 0, pipe.manifest())
    return models


def _served(name: str, pipe: Pipeline, created: int, manifest: Mapping[str, Any]) -> ServedModel:
    if pipe.model is None:
        raise CharseqError(f"model {name!r} has no weights yet: fit or load it first")
    if pipe.spec.task.name != "lm":
        raise CharseqError(
            f"model {name!r} is a classifier (task {pipe.spec.task.name!r}): charseq serve "
            "serves language models, which write text; charseq predict labels texts with it"
        )
    pipe.model.eval()  # once, for every request (see the module's docstring)
    pipe.model.requires_grad_(False)
    return ServedModel(name, pipe, created, describe(pipe, manifest))


def describe(pipe: Pipeline, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What ``GET /v1/models`` says of a model: its cell, size, tokenizer, corpus size (in
    tokens: characters for the ``char`` tokenizer), best validation BPC, steps trained, and the
    named verse forms its vocabulary can fill."""
    cell = pipe.spec.cell
    bounds = (manifest.get("corpus") or {}).get("bounds") or {}
    ends = [end for _, end in bounds.values()] if isinstance(bounds, dict) else []
    bpc = (manifest.get("metrics") or {}).get("best_val_bpc")
    return {
        "cell": cell.name,
        "hidden_size": cell.layout.hidden_size,
        "num_layers": cell.layout.num_layers,
        "tokenizer": pipe.spec.tokenizer.name,
        "corpus_chars": int(max(ends)) if ends else None,
        "val_bpc": float(bpc) if isinstance(bpc, int | float) else None,
        "steps": int(pipe.steps_trained),
        "forms": fillable_forms(pipe),
    }


def fillable_forms(pipe: Pipeline) -> list[str]:
    """The named verse forms (:data:`~charseq.constraints.FORMS`) that ``pipe``'s vocabulary
    can fill: each is checked once, as a request with that ``form`` would be."""
    names = []
    for name in FORMS:
        try:
            Constraints(form=name).compile(pipe.tokenizer)
        except GenerationError:
            continue
        names.append(name)
    return names
