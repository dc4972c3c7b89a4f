"""A pipeline: tokenizer, model, optimizer and sampler, composed from a spec.

>>> pipe = Pipeline.from_spec({"cell": {"name": "gru", "hidden_size": 32}})   # doctest: +SKIP
>>> pipe.fit(text).generate("ROMEO:", max_new_tokens=200)                      # doctest: +SKIP

:class:`Pipeline` is a facade: each of its methods delegates to the module that owns the
concept (:mod:`charseq.assemble` builds the parts, :mod:`charseq.devices` picks the device,
:mod:`charseq.run_transaction` guards the run directory, :mod:`charseq.corpus.training` reads
the corpus, :mod:`charseq.train` trains, :mod:`charseq.persist` saves and loads,
:mod:`charseq.plugin_records` stands in for absent plugins). What a fitted pipeline does with
text (generate, stream, score, evaluate) is :class:`~charseq.text_methods.TextMethods`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from charseq import distributed
from charseq.assemble import as_spec, build_model, build_optimizer, build_tokenizer
from charseq.callbacks import Callback, shows_progress
from charseq.checkpoint import read_checkpoint
from charseq.classify.metrics import ClassificationMetrics
from charseq.classify.training import (
    LabelledData,
    Prediction,
    evaluate_classifier,
    fit_classifier,
    predict,
    resume_classifier,
)
from charseq.corpus.training import CorpusRead, Files, read_corpus, reread_corpus
from charseq.devices import DEVICE_TYPES, resolve_device
from charseq.distributed import World
from charseq.distributed_run import new_run_on, resumed_run_on, share_corpus
from charseq.errors import CharseqError, deprecated_alias
from charseq.interfaces import Tokenizer
from charseq.model import CharModel
from charseq.persist import load_pipeline, pipeline_manifest, resumable_checkpoint, save_pipeline
from charseq.plugin_records import StandIns
from charseq.registry import Registry, get_registry
from charseq.requests import MAX_NEW_TOKENS, MAX_NUM_SAMPLES, with_policy
from charseq.spec import PipelineSpec
from charseq.text_methods import TextMethods
from charseq.train import Trainer, TrainResult, check_precision, with_budget

__all__ = ["DEVICE_TYPES", "MAX_NEW_TOKENS", "MAX_NUM_SAMPLES", "Pipeline", "with_policy"]


class Pipeline(TextMethods):
    """Tokenizer, model, optimizer and sampler, built from one :class:`PipelineSpec`.

    Build with :meth:`from_spec` (then :meth:`fit`) or :meth:`load`; what a fitted pipeline
    does with text (:meth:`generate`, :meth:`stream`, :meth:`score`, :meth:`evaluate`) is
    written in :class:`~charseq.text_methods.TextMethods`.

    Attributes:
        spec: the validated spec.
        tokenizer: the tokenizer (fitted by :meth:`fit` or restored by :meth:`load`).
        model: the :class:`~charseq.model.CharModel`, or ``None`` until the vocabulary is known.
        device: where the model lives.
        steps_trained: the optimizer steps the model has been trained for.
        last_run: how the last :meth:`fit` or :meth:`resume` ended (``None`` before one).
        normalize: the Unicode normalisation (``"NFC"``, ``"NFKC"``) the training corpus was
            read with, if any; primes and scored texts are normalised the same way.
        stand_ins: the plugins a loaded checkpoint names that this machine lacks.
        classes: a classifier's class names, in the order of its outputs (``None`` for a
            language model, and before :meth:`fit`).
        data_hash: a classifier's training data, hashed (texts and labels; ``None`` when not
            known): what :meth:`classification_metrics` checks before it picks a split of it.
    """

    def __init__(
        self,
        spec: PipelineSpec,
        tokenizer: Tokenizer,
        model: CharModel | None = None,
        *,
        registry: Registry | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.spec = spec
        self.tokenizer = tokenizer
        self.model = model
        self.registry = get_registry(registry)
        self.device = resolve_device(device)
        self.steps_trained = 0
        self.last_run: TrainResult | None = None
        self.normalize: str | None = None
        self.stand_ins = StandIns()
        self.classes: tuple[str, ...] | None = None
        self.data_hash: str | None = None
        if model is not None:
            model.to(self.device)

    step = deprecated_alias("Pipeline", "step", "steps_trained")
    result = deprecated_alias("Pipeline", "result", "last_run")

    # -- building -----------------------------------------------------------------------------

    @classmethod
    def from_spec(
        cls,
        spec: PipelineSpec | Mapping[str, Any] | str | Path | None = None,
        *,
        registry: Registry | None = None,
        device: torch.device | str | None = None,
    ) -> Pipeline:
        """A pipeline from a spec object, a dict, or a ``.toml`` / ``.json`` file path.

        The spec is validated here, before any data is read or weight allocated.
        """
        registry = get_registry(registry)
        spec = as_spec(spec, registry)
        return cls(spec, build_tokenizer(spec, registry), registry=registry, device=device)

    def build_model(self) -> CharModel:
        """A freshly initialised model for the fitted tokenizer's vocabulary."""
        if not self.tokenizer.is_fitted:
            raise CharseqError("the tokenizer has no vocabulary yet: call fit(text) first")
        return build_model(self.spec, self.registry, self.tokenizer.vocab_size).to(self.device)

    def build_optimizer(self, parameters: Any) -> torch.optim.Optimizer:
        """The spec's optimizer over ``parameters``."""
        self.stand_ins.require("optimizer", self.spec, "train")
        return build_optimizer(self.spec, self.registry, parameters)

    # -- training -----------------------------------------------------------------------------

    def fit(
        self,
        text: str | None = None,
        *,
        data: LabelledData | None = None,
        files: Files | None = None,
        include: Sequence[str] = ("*",),
        encoding: str = "utf-8",
        normalize: str | None = None,
        out: str | Path | None = None,
        overwrite: bool = False,
        steps: int | None = None,
        max_seconds: float | None = None,
        callbacks: Sequence[Callback] = (),
        handle_signals: bool = False,
        text_column: str | None = None,
        label_column: str | None = None,
        init_from: str | Path | None = None,
    ) -> Pipeline:
        """Train on ``text`` or on ``files`` (a language model), or on labelled ``data`` (a
        classifier, ``task = "classify"``); returns ``self`` (the run's end is in
        :attr:`last_run`).

        The corpus is split by ``train.val_fraction`` and ``train.test_fraction``; the tokenizer
        is fitted on the whole corpus and the model built (seeded by ``train.seed``) on first
        use. A fit that fails before training starts leaves the pipeline and ``out`` as they were.

        Args:
            text: the corpus as a string (for files, use ``files``).
            data: a classifier's labelled texts: a TSV, CSV or JSONL file, a directory of one
                text file per label (:mod:`charseq.classify.data`), or a
                :class:`~charseq.classify.data.Labelled`; split by class, stratified.
            files: corpus files or directories (or ``"-"`` for standard input), streamed into a
                memory-mapped id cache under ``out/cache``.
            include: glob(s) a file in a directory of ``files`` must match (``"*"``: all).
            encoding: the text encoding ``files`` are read with.
            normalize: ``None``, or ``"NFC"`` or ``"NFKC"`` to normalise the text of ``files``.
            out: the run directory (``docs/reference/checkpoint.md``), new or empty; nothing is
                written if ``None``. A run there is continued with :meth:`resume`.
            overwrite: replace the run in ``out`` (put back if the new run fails before its
                first checkpoint).
            steps: optimizer steps to reach; it becomes the spec's ``train.steps``, so a later
                ``fit`` goes on from :attr:`steps_trained` towards it.
            max_seconds: a training-time budget (default: the spec's ``train.max_seconds``).
            callbacks: :class:`~charseq.callbacks.Callback` objects told of progress.
            handle_signals: let Ctrl-C / SIGTERM stop training with a checkpoint.
            text_column, label_column: the columns of a TSV/CSV ``data`` file (default: a
                header's ``text`` and ``label``, or the first two columns).
            init_from: a new classifier's start: a language model's run or checkpoint, whose
                tokenizer, embedding and cells (and their spec sections) it takes, trained;
                with ``task.freeze_cells`` only the head learns.
        """
        world = distributed.init(self.device)  # a torchrun job's process group, if in one
        if data is not None or init_from is not None or self.spec.task.name == "classify":
            self._require_task("classify", "fit(data=...)")
            _one_process_only(world)
            if data is None or text is not None or files is not None:
                raise CharseqError(
                    "a classifier (task 'classify') trains on labelled texts: "
                    "fit(data='labelled.tsv'), not on text or files",
                    argument="data",
                )
            reading = {"text_column": text_column, "label_column": label_column}
            return fit_classifier(
                self, data, init_from=init_from, reading=reading | {"encoding": encoding}, out=out,
                overwrite=overwrite, steps=steps, max_seconds=max_seconds, callbacks=callbacks,
                handle_signals=handle_signals,
            )  # fmt: skip
        spec = with_budget(self.spec, self.registry, steps, max_seconds, self.steps_trained)
        check_precision(spec, self.device)  # before reading any corpus
        self.stand_ins.require("optimizer", spec, "train")
        if any(callback.samples_with_the_spec for callback in callbacks):
            self.stand_ins.require("sampler", spec, "sample during training")
        before = (self.spec, self.model, self.tokenizer, self.normalize)
        with new_run_on(world, out, overwrite) as run:  # several processes: rank 0's
            try:
                self.spec = spec
                read = share_corpus(
                    world,
                    lambda: read_corpus(
                        self.tokenizer, spec.train, text=text, files=files, include=include,
                        encoding=encoding, normalize=normalize, cache=run.cache,
                        progress=shows_progress(callbacks),
                    ),  # fmt: skip
                    self.tokenizer, spec.train, run, text=text,
                )  # fmt: skip
                self.tokenizer = read.tokenizer
                if self.model is None:
                    torch.manual_seed(spec.train.seed)
                    self.model = self.build_model()
                trainer = self._trainer(read, run.directory, callbacks, handle_signals)
            except BaseException:  # not started: the pipeline as it was
                self.spec, self.model, self.tokenizer, self.normalize = before
                raise
            self.last_run = trainer.run()
            run.interrupted = self.last_run.reason == "interrupted"
        return self

    @classmethod
    def resume(
        cls,
        checkpoint: str | Path,
        *,
        text: str | None = None,
        files: Files | None = None,
        data: LabelledData | None = None,
        steps: int | None = None,
        max_seconds: float | None = None,
        callbacks: Sequence[Callback] = (),
        handle_signals: bool = False,
        registry: Registry | None = None,
        device: torch.device | str | None = None,
    ) -> Pipeline:
        """Continue a run exactly where ``checkpoint`` (a checkpoint or run directory) left off.

        The corpus, the very one it was trained on, comes from the run's cache or from ``files``
        / ``text``, never from the paths the checkpoint records (``docs/how-to/train.md``).
        ``steps`` and ``max_seconds`` may be raised; every other setting is the checkpoint's.
        A classifier's run resumes on the very labelled ``data`` it was trained on.
        """
        registry = get_registry(registry)
        world = distributed.init(resolve_device(device))
        path, manifest = _checkpoint_to_resume(world, checkpoint, registry)
        pipe = cls.load(path, registry=registry, device=device)
        pipe.spec = with_budget(pipe.spec, pipe.registry, steps, max_seconds, pipe.steps_trained)
        if pipe.spec.task.name == "classify":
            _one_process_only(world)
            return resume_classifier(
                pipe, path, manifest, data, reading={}, callbacks=callbacks,
                handle_signals=handle_signals,
            )  # fmt: skip
        with resumed_run_on(world, path.parent, own_cache=text is None) as run:
            read = share_corpus(
                world,
                lambda: reread_corpus(
                    pipe.tokenizer, pipe.spec.train, path, manifest, text=text, files=files,
                    cache=run.cache, same=True, progress=shows_progress(callbacks),
                ),  # fmt: skip
                pipe.tokenizer, pipe.spec.train, run, text=text,
            )  # fmt: skip
            trainer = pipe._trainer(read, run.directory, callbacks, handle_signals)
            trainer.restore(path, manifest)
            pipe.last_run = trainer.run()
        return pipe

    def _trainer(
        self, read: CorpusRead, out: Path | None, callbacks: Sequence[Callback], signals: bool
    ) -> Trainer:
        """A trainer on the corpus ``read``, whose normalisation (files only) primes now get."""
        self.normalize = read.record.get("normalize", self.normalize)
        return Trainer(
            self, read.splits, out_dir=out, callbacks=callbacks, corpus=read.record,
            handle_signals=signals,
        )  # fmt: skip

    def _require_task(self, task: str, wanted: str) -> None:
        """Refuse ``wanted`` (a method) unless this pipeline's task is ``task``."""
        have = self.spec.task.name
        if have != task:
            what = {"lm": "a language model", "classify": "a classifier"}
            raise CharseqError(
                f"{wanted} is for {what[task]} (task {task!r}), and this pipeline is "
                f"{what[have]} (task {have!r})"
                + (": build it from a spec with task = 'classify'" if task == "classify" else "")
            )

    # -- classifying ----------------------------------------------------------------------------

    def predict(
        self,
        texts: str | Sequence[str],
        *,
        top: int = 1,
        unknown: str | None = None,
        batch_size: int = 64,
    ) -> Prediction | list[Prediction]:
        """A classifier's prediction for each text: its label, probability and ``top`` most
        likely classes (a :class:`~charseq.classify.training.Prediction`; a list for a list).
        """
        self._require_task("classify", "predict")
        if self.model is None:
            raise CharseqError("this classifier has no model yet: call fit(data=...) first")
        return predict(self, texts, top=top, unknown=unknown, batch_size=batch_size)

    def classification_metrics(
        self,
        data: LabelledData,
        *,
        split: str = "all",
        text_column: str | None = None,
        label_column: str | None = None,
        batch_size: int = 64,
    ) -> ClassificationMetrics:
        """A classifier's accuracy, macro-F1, per-class precision/recall/F1 and confusion
        matrix on labelled ``data``: all of it, or (``split`` = ``"train"``, ``"val"``,
        ``"test"``) that part of the data it was trained on, split as in training."""
        self._require_task("classify", "classification_metrics")
        reading = {"text_column": text_column, "label_column": label_column}
        return evaluate_classifier(self, data, split=split, reading=reading, batch_size=batch_size)

    # -- saving -------------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        """What a checkpoint of this pipeline records besides tensors."""
        return pipeline_manifest(self)

    def save(self, directory: str | Path) -> Path:
        """Write a weights-only checkpoint directory, atomically: enough to sample and evaluate,
        not to resume (``docs/reference/checkpoint.md``). It may replace an earlier ``save``,
        never a training run's checkpoint."""
        return save_pipeline(self, self._require_trained(), directory)

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        registry: Registry | None = None,
        device: torch.device | str | None = None,
    ) -> Pipeline:
        """Rebuild a pipeline from a checkpoint, or from a run directory's latest checkpoint.

        Nothing is unpickled. The checkpoint's tokenizer and cell plugins must be installed;
        its optimizer and sampler may be stood in for (see :mod:`charseq.persist`).
        """
        path, manifest, tensors = read_checkpoint(directory, ["model"])
        registry = get_registry(registry)
        return load_pipeline(
            cls, path, manifest, tensors["model"], registry=registry, device=device
        )

    def __repr__(self) -> str:
        cell = self.spec.cell
        return (
            f"Pipeline(tokenizer={self.spec.tokenizer.name!r}, cell={cell.name!r} "
            f"{cell.layout.num_layers}x{cell.layout.hidden_size}, "
            f"optimizer={self.spec.optimizer.name!r}, sampler={self.spec.sampler.name!r}, "
            f"fitted={self.model is not None})"
        )


def _one_process_only(world: World) -> None:
    """Refuse to train a classifier on several processes (not supported yet)."""
    if world.distributed:
        raise CharseqError(
            f"a classifier trains on one process; this is rank {world.rank} of a torchrun job "
            f"of {world.size}: run it without torchrun (or --nproc)"
        )


def _checkpoint_to_resume(
    world: World, checkpoint: str | Path, registry: Registry
) -> tuple[Path, dict[str, Any]]:
    """The checkpoint to resume and its manifest (:func:`resumable_checkpoint`), the same one on
    every rank: rank 0's choice of the run's latest."""
    path, manifest = resumable_checkpoint(checkpoint, registry)
    chosen = Path(world.broadcast(str(path)))
    if chosen != path:  # another rank read latest.json at another moment
        path, manifest = resumable_checkpoint(chosen, registry)
    return path, manifest
