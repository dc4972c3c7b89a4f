"""Training a pipeline whose task is ``classify``: labelled texts in, a
:class:`~charseq.classify.model.TextClassifier` trained by the same
:class:`~charseq.train.Trainer` as the language model, with :class:`ClassificationTask`.

:meth:`Pipeline.fit <charseq.Pipeline.fit>` and :meth:`Pipeline.resume <charseq.Pipeline.resume>`
hand a classifier's data here; :func:`predict` is :meth:`Pipeline.predict
<charseq.Pipeline.predict>`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import torch

from charseq.callbacks import Callback
from charseq.checkpoint import CheckpointError
from charseq.classify.data import Labelled, read_labelled, stratified_split
from charseq.classify.metrics import ClassificationMetrics, classification_metrics
from charseq.classify.model import build_classifier
from charseq.classify.task import ClassificationTask, Examples, predict_proba
from charseq.errors import CharseqError
from charseq.requests import encode_text
from charseq.run_transaction import new_run, resumed_run
from charseq.train import Trainer, check_precision, with_budget

if TYPE_CHECKING:
    from charseq.pipeline import Pipeline

LabelledData = Labelled | str | Path
"""Labelled texts as :meth:`Pipeline.fit <charseq.Pipeline.fit>` takes them: read already, or a
file or directory (:func:`~charseq.classify.data.read_labelled`)."""


@attrs.frozen
class Prediction:
    """A text's predicted class, its probability, and the ``top`` classes, most likely first."""

    label: str
    probability: float
    top: tuple[tuple[str, float], ...]


def as_labelled(data: LabelledData, **reading: Any) -> Labelled:
    """``data`` read (a path) or as given (a :class:`~charseq.classify.data.Labelled`)."""
    if isinstance(data, Labelled):
        return data
    if not isinstance(data, str | Path):
        raise CharseqError(
            f"data must be a labelled file or directory (TSV, CSV, JSONL, a folder of one file "
            f"per label) or a charseq.classify.data.Labelled, got {type(data).__name__}"
        )
    return read_labelled(data, **reading)


def data_hash(labelled: Labelled) -> str:
    """A hash of the texts and labels, in order: a resumed run checks it was given the same."""
    digest = hashlib.sha256()
    for text, label in zip(labelled.texts, labelled.labels, strict=True):
        digest.update(text.encode("utf-8") + b"\0" + label.encode("utf-8") + b"\0")
    return digest.hexdigest()


def encode_texts(
    pipe: Pipeline, texts: Sequence[str], whats: Sequence[str], unknown: str | None = None
) -> list[list[int]]:
    """Each text's ids, normalised as the training texts were and encoded with ``pipe``'s
    tokenizer (``unknown`` overriding its policy); ``whats`` name the texts in errors."""
    encoded = []
    for text, what in zip(texts, whats, strict=True):
        ids = encode_text(
            pipe.tokenizer, text, what=what, unknown=unknown, normalize=pipe.normalize
        )
        if not ids:
            raise CharseqError(f"{what} has no characters left once unknown ones go")
        encoded.append(ids)
    return encoded


def examples_of(pipe: Pipeline, labelled: Labelled) -> Examples:
    """``labelled`` encoded with ``pipe``'s tokenizer and split as ``pipe.spec.train`` says."""
    train = pipe.spec.train
    whats = [f"the text at {source}" for source in labelled.sources]
    ids = [np.asarray(i, dtype=np.int64) for i in encode_texts(pipe, labelled.texts, whats)]
    split = stratified_split(
        labelled.labels, val=train.val_fraction, test=train.test_fraction, seed=train.seed
    )
    classes = labelled.classes
    if pipe.classes is not None and tuple(pipe.classes) != classes:
        raise CharseqError(
            f"the data's classes {list(classes)} are not the model's {list(pipe.classes)}"
        )
    return Examples(tuple(ids), labelled.label_ids(), classes, split.train, split.val, split.test)


def fit_classifier(
    pipe: Pipeline,
    data: LabelledData,
    *,
    init_from: str | Path | None = None,
    reading: dict[str, Any],
    out: str | Path | None,
    overwrite: bool,
    steps: int | None,
    max_seconds: float | None,
    callbacks: Sequence[Callback],
    handle_signals: bool,
) -> Pipeline:
    """:meth:`Pipeline.fit <charseq.Pipeline.fit>` for a pipeline whose task is ``classify``;
    ``init_from``, a language model's run or checkpoint, gives a new classifier its tokenizer,
    embedding and cells (and its spec's tokenizer, cell and model sections)."""
    if init_from is not None and pipe.model is not None:
        raise CharseqError("init_from starts a new classifier; this one is trained already")
    before = (pipe.spec, pipe.model, pipe.tokenizer, pipe.classes, pipe.normalize, pipe.data_hash)
    language_model = _language_model(init_from, pipe) if init_from is not None else None
    if language_model is not None:
        lm = language_model.spec
        pipe.spec = pipe.spec.replace(tokenizer=lm.tokenizer, cell=lm.cell, model=lm.model)
        pipe.tokenizer, pipe.normalize = language_model.tokenizer, language_model.normalize
    spec = with_budget(pipe.spec, pipe.registry, steps, max_seconds, pipe.steps_trained)
    check_precision(spec, pipe.device)
    pipe.stand_ins.require("optimizer", spec, "train")
    try:
        labelled = as_labelled(data, **reading)
    except BaseException:
        pipe.spec, pipe.model, pipe.tokenizer, pipe.classes, pipe.normalize, pipe.data_hash = before
        raise
    with new_run(out, overwrite) as run:
        try:
            pipe.spec = spec
            if not pipe.tokenizer.is_fitted:
                pipe.tokenizer.fit("\n".join(labelled.texts))
            examples = examples_of(pipe, labelled)
            if pipe.model is None:
                torch.manual_seed(spec.train.seed)
                pipe.model = build_classifier(
                    spec, pipe.registry, pipe.tokenizer.vocab_size, len(examples.classes),
                    pooling=spec.task.pooling, dropout=spec.task.dropout,
                ).to(pipe.device)  # fmt: skip
                if language_model is not None:  # its embedding and cells, trained
                    pipe.model.embedding.load_state_dict(
                        language_model.model.embedding.state_dict()
                    )
                    pipe.model.stack.load_state_dict(language_model.model.stack.state_dict())
                pipe.classes = examples.classes
            pipe.data_hash = data_hash(labelled)
            trainer = _trainer(pipe, labelled, examples, run.directory, callbacks, handle_signals)
        except BaseException:  # not started: the pipeline as it was
            pipe.spec, pipe.model, pipe.tokenizer, pipe.classes, pipe.normalize, pipe.data_hash = (
                before
            )
            raise
        pipe.last_run = trainer.run()
        run.interrupted = pipe.last_run.reason == "interrupted"
    return pipe


def _language_model(init_from: str | Path, pipe: Pipeline) -> Pipeline:
    """The language model ``init_from`` names, loaded (refused unless its task is ``lm``)."""
    from charseq.pipeline import Pipeline

    loaded = Pipeline.load(init_from, registry=pipe.registry, device=pipe.device)
    if loaded.spec.task.name != "lm":
        raise CharseqError(
            f"init_from={str(init_from)!r} is a classifier (task {loaded.spec.task.name!r}); a "
            "classifier starts from a language model's run (task 'lm')",
            argument="init_from",
        )
    return loaded


def resume_classifier(
    pipe: Pipeline,
    path: Path,
    manifest: dict[str, Any],
    data: LabelledData | None,
    *,
    reading: dict[str, Any],
    callbacks: Sequence[Callback],
    handle_signals: bool,
) -> Pipeline:
    """:meth:`Pipeline.resume <charseq.Pipeline.resume>` for a classifier's run: ``data`` must
    be the labelled texts it was trained on (their hash is checked), split again as then."""
    if data is None:
        raise CharseqError(
            f"{path} is a classifier's run: resume it with the labelled data it was trained on "
            "(data=...)"
        )
    labelled = as_labelled(data, **reading)
    if pipe.data_hash != data_hash(labelled):  # as its checkpoint recorded (load read it)
        raise CheckpointError(
            f"the labelled data given is not what {path} was trained on (its texts and labels "
            "hash otherwise): resume with the very same data"
        )
    examples = examples_of(pipe, labelled)
    with resumed_run(path.parent, own_cache=False) as run:
        trainer = _trainer(pipe, labelled, examples, run.directory, callbacks, handle_signals)
        trainer.restore(path, manifest)
        pipe.last_run = trainer.run()
    return pipe


def _trainer(
    pipe: Pipeline,
    labelled: Labelled,
    examples: Examples,
    out: Path | None,
    callbacks: Sequence[Callback],
    signals: bool,
) -> Trainer:
    record = {
        "kind": "labelled",
        "hash": pipe.data_hash,
        "examples": len(labelled),
        "classes": list(examples.classes),
        "source": labelled.sources[0].rsplit(":", 1)[0] if labelled.sources else None,
    }
    task = ClassificationTask(pipe.spec.task, examples)
    return Trainer(
        pipe, examples, out_dir=out, callbacks=callbacks, corpus=record,  # type: ignore[arg-type]
        handle_signals=signals, task=task,
    )  # fmt: skip


def evaluate_classifier(
    pipe: Pipeline, data: LabelledData, *, split: str, reading: dict[str, Any], batch_size: int
) -> ClassificationMetrics:
    """A classifier's metrics on labelled ``data``: all of it (``split="all"``), or the
    ``train``, ``val`` or ``test`` part of the very data it was trained on, split as then."""
    if split not in ("all", "train", "val", "test"):
        raise CharseqError(f"split must be all, train, val or test, got {split!r}")
    labelled = as_labelled(data, **({"for_training": False} | reading))
    unknown = sorted(set(labelled.classes) - set(pipe.classes or ()))
    if unknown:
        raise CharseqError(
            f"the data has labels the classifier does not know: {unknown[:5]} (its classes: "
            f"{list(pipe.classes or ())})"
        )
    chosen = np.arange(len(labelled))
    if split != "all":
        if pipe.data_hash != data_hash(labelled):
            raise CharseqError(
                f"split={split!r} picks part of the data the classifier was trained on, and "
                "this is other data: give that data, or split='all' to evaluate all of this",
                argument="split",
            )
        train = pipe.spec.train
        parts = stratified_split(
            labelled.labels, val=train.val_fraction, test=train.test_fraction, seed=train.seed
        )
        chosen = getattr(parts, split)
        if not len(chosen):
            raise CharseqError(f"the {split} split of this run is empty")
    index = {name: i for i, name in enumerate(pipe.classes or ())}
    texts = [labelled.texts[i] for i in chosen]
    ids = encode_texts(pipe, texts, [f"the text at {labelled.sources[i]}" for i in chosen])
    probs = predict_proba(pipe.model, ids, batch_size)  # (N, C)
    true = [index[labelled.labels[i]] for i in chosen]
    return classification_metrics(true, probs.argmax(axis=1), pipe.classes or ())


def predict(
    pipe: Pipeline, texts: str | Sequence[str], *, top: int, unknown: str | None, batch_size: int
) -> Prediction | list[Prediction]:
    """:meth:`Pipeline.predict <charseq.Pipeline.predict>`."""
    one = isinstance(texts, str)
    items = [texts] if one else list(texts)
    if not all(isinstance(t, str) and t for t in items):
        raise CharseqError("predict needs non-empty texts (str)")
    if not isinstance(top, int) or top < 1:
        raise CharseqError(f"top must be an int >= 1, got {top!r}")
    ids = encode_texts(pipe, items, [f"text {i}" for i in range(len(items))], unknown)
    probs = predict_proba(pipe.model, ids, batch_size)  # (N, C)
    classes = pipe.classes
    out = []
    for row in probs:
        order = np.argsort(-row, kind="stable")[:top]
        ranked = tuple((classes[c], float(row[c])) for c in order)
        out.append(Prediction(ranked[0][0], ranked[0][1], ranked))
    return out[0] if one else out
