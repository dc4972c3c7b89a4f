"""A pipeline: tokenizer, model, optimizer and sampler, composed from a spec.

>>> pipe = Pipeline.from_spec({"cell": {"name": "gru", "hidden_size": 32}})   # doctest: +SKIP
>>> pipe.fit(text).generate("ROMEO:", max_new_tokens=200)                      # doctest: +SKIP

:class:`Pipeline` is a facade: each of its methods delegates to the module that owns the
concept (:mod:`charseq.assemble` builds the parts, :mod:`charseq.devices` picks the device,
:mod:`charseq.run_transaction` guards the run directory, :mod:`charseq.corpus.training` reads
the corpus, :mod:`charseq.train` trains, :mod:`charseq.requests` checks what is asked of a trained
model (generate, score, evaluate), :mod:`charseq.persist` saves and loads,
:mod:`charseq.plugin_records` stands in for absent plugins).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from charseq.assemble import as_spec, build_model, build_optimizer, build_tokenizer
from charseq.callbacks import Callback, shows_progress
from charseq.checkpoint import read_checkpoint
from charseq.constraints import apply_stop
from charseq.corpus.training import CorpusRead, Files, read_corpus, reread_corpus
from charseq.devices import DEVICE_TYPES, resolve_device
from charseq.errors import CharseqError, deprecated_alias
from charseq.interfaces import Tokenizer
from charseq.model import CharModel
from charseq.persist import load_pipeline, pipeline_manifest, resumable_checkpoint, save_pipeline
from charseq.plugin_records import OWN_SAMPLER, StandIns
from charseq.registry import Registry, get_registry
from charseq.requests import (
    MAX_NEW_TOKENS,
    MAX_NUM_SAMPLES,
    GenerationRequest,
    SamplerChoice,
    evaluate_text,
    resolve_sampler,
    score_text,
    with_policy,
)
from charseq.run_transaction import new_run, resumed_run
from charseq.scoring import UNITS, Score
from charseq.spec import PipelineSpec
from charseq.streaming import Generation, stream_text
from charseq.train import Trainer, TrainResult, check_precision, with_budget

__all__ = ["DEVICE_TYPES", "MAX_NEW_TOKENS", "MAX_NUM_SAMPLES", "Pipeline", "with_policy"]


class Pipeline:
    """Tokenizer, model, optimizer and sampler, built from one :class:`PipelineSpec`.

    Build with :meth:`from_spec` (then :meth:`fit`) or :meth:`load`.

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
        self.registry = get_registry() if registry is None else registry
        self.device = resolve_device(device)
        self.steps_trained = 0
        self.last_run: TrainResult | None = None
        self.normalize: str | None = None
        self.stand_ins = StandIns()
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
        registry = get_registry() if registry is None else registry
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
    ) -> Pipeline:
        """Train on ``text`` or on ``files``; returns ``self`` (the run's end is in
        :attr:`last_run`).

        The corpus is split by ``train.val_fraction`` and ``train.test_fraction``; the tokenizer
        is fitted on the whole corpus and the model built (seeded by ``train.seed``) on first
        use. A fit that fails before training starts leaves the pipeline and ``out`` as they were.

        Args:
            text: the corpus as a string (for files, use ``files``).
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
        """
        spec = with_budget(self.spec, self.registry, steps, max_seconds, self.steps_trained)
        check_precision(spec, self.device)  # before reading any corpus
        self.stand_ins.require("optimizer", spec, "train")
        if any(callback.samples_with_the_spec for callback in callbacks):
            self.stand_ins.require("sampler", spec, "sample during training")
        before = (self.spec, self.model, self.tokenizer, self.normalize)
        with new_run(out, overwrite) as run:
            try:
                self.spec = spec
                read = read_corpus(
                    self.tokenizer, spec.train, text=text, files=files, include=include,
                    encoding=encoding, normalize=normalize, cache=run.cache,
                    progress=shows_progress(callbacks),
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
        """
        registry = get_registry() if registry is None else registry
        path, manifest = resumable_checkpoint(checkpoint, registry)
        pipe = cls.load(path, registry=registry, device=device)
        pipe.spec = with_budget(pipe.spec, pipe.registry, steps, max_seconds, pipe.steps_trained)
        with resumed_run(path.parent, own_cache=text is None) as run:
            read = reread_corpus(
                pipe.tokenizer, pipe.spec.train, path, manifest, text=text, files=files,
                cache=run.cache, same=True, progress=shows_progress(callbacks),
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

    def evaluate(self, text: str, chunk_size: int = 8192) -> dict[str, float]:
        """Cross-entropy of ``text`` under the model: ``{"nats", "bpc", "tokens"}``.

        One stream, read ``chunk_size`` tokens at a time with the state carried, so every
        token after the first is predicted from all that precede it, in bounded memory.
        """
        return evaluate_text(
            self._require_model(), self.tokenizer, text, chunk_size=chunk_size,
            normalize=self.normalize, device=self.device,
        )  # fmt: skip

    # -- generation ---------------------------------------------------------------------------

    def generate(
        self,
        prime: str = "",
        max_new_tokens: int = 200,
        *,
        sampler: SamplerChoice = None,
        seed: int | None = None,
        num_samples: int | None = None,
        stop: str | Sequence[str] | None = None,
        allowed: str | None = None,
        acrostic: str | None = None,
        unknown: str | None = None,
    ) -> str | list[str]:
        """Continue ``prime`` by up to ``max_new_tokens`` tokens.

        Everything is checked before any generation starts (a bad request raises
        :class:`~charseq.constraints.GenerationError`, a ``ValueError``, or the tokenizer's
        ``UnknownCharacterError`` for the prime). Constraints compose with every sampler; see
        :mod:`charseq.constraints`.

        Args:
            prime: text to start from (consumed in one fused pass); empty starts from uniform
                odds. Characters outside the vocabulary follow the tokenizer's policy, or
                ``unknown``.
            max_new_tokens: how many tokens to add, in ``[0, MAX_NEW_TOKENS]``.
            sampler: the spec's sampler if ``None``; else a name (``"greedy"``), a dict
                (``{"name": "temperature", "temperature": 0.8}``) or a :class:`Sampler`.
            seed: makes the output reproducible on the same device.
            num_samples: when given, return a list of this many samples, made as one batch
                (at most ``MAX_NUM_SAMPLES``).
            stop: stop string(s): each text ends just after the first one it produces (the stop
                string is included, as in Hugging Face's ``stop_strings``).
            allowed: the only characters that may be generated.
            acrostic: force the first character of each line, in order.
            unknown: ``"error"``, ``"skip"`` or ``"replace"``: override the tokenizer's policy
                for characters of the prime outside the vocabulary.

        Returns:
            The generated text (without the prime); a list of texts if ``num_samples`` is set
            or the sampler returns several sequences per sample (``num_return_sequences``).
        """
        request = GenerationRequest(
            prime=prime, max_new_tokens=max_new_tokens, sampler=sampler, seed=seed,
            num_samples=1 if num_samples is None else num_samples, stop=stop, allowed=allowed,
            acrostic=acrostic, unknown=unknown,
        )  # fmt: skip
        job = self._prepare(request)
        out = job.run(max_new_tokens)
        texts = [apply_stop(self.tokenizer.decode(row.tolist()), job.stop) for row in out.ids]
        return texts if num_samples is not None or len(texts) > 1 else texts[0]

    def stream(
        self,
        prime: str = "",
        max_new_tokens: int = 200,
        *,
        sampler: SamplerChoice = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        allowed: str | None = None,
        acrostic: str | None = None,
        unknown: str | None = None,
    ) -> Iterator[str]:
        """Like :meth:`generate` for one sample, but yield the text in pieces as it is made.

        The request is checked here, before the first piece. Joined, the pieces equal what
        :meth:`generate` returns with the same arguments and seed; closing the iterator early
        stops generation at the next token. How pieces are cut (a token each, stop strings
        held back, beam search in one piece) is in ``docs/how-to/generate.md``.
        """
        request = GenerationRequest(
            prime=prime, max_new_tokens=max_new_tokens, sampler=sampler, seed=seed, stop=stop,
            allowed=allowed, acrostic=acrostic, unknown=unknown,
        )  # fmt: skip
        return stream_text(self._prepare(request), self.tokenizer, max_new_tokens)

    def _prepare(self, request: GenerationRequest) -> Generation:
        sampler = functools.partial(
            resolve_sampler, spec=self.spec, registry=self.registry, stand_ins=self.stand_ins
        )
        return request.prepare(
            self._require_model(), self.tokenizer, device=self.device, normalize=self.normalize,
            resolve_sampler=sampler,
        )  # fmt: skip

    def sampler_section(self) -> dict[str, Any]:
        """The spec's sampler as a table (``name`` and options), to adjust and pass as
        ``sampler=...``; refused when it is a loaded checkpoint's sampler whose plugin is not
        installed here (another sampler must then be named)."""
        self.stand_ins.require("sampler", self.spec, OWN_SAMPLER)
        return self.spec.sampler.to_dict()

    # -- scoring ------------------------------------------------------------------------------

    def score(
        self,
        text: str,
        *,
        prime: str = "",
        top: int = 10,
        unknown: str | None = None,
        chunk_size: int = 8192,
    ) -> Score:
        """How likely the model finds ``text``: per-token log-probabilities, total nats, BPC
        and the ``top`` most surprising positions (see :class:`~charseq.scoring.Score`).

        Every token of ``text`` is scored given all before it and ``prime``; without a prime
        the first token is scored under the uniform odds generation starts from.
        """
        return score_text(
            self._require_model(), self.tokenizer, text, prime=prime, top=top, unknown=unknown,
            normalize=self.normalize, chunk_size=chunk_size,
            unit=UNITS.get(self.spec.tokenizer.name, ""),  # "": told by the token texts
        )  # fmt: skip

    # -- saving -------------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        """What a checkpoint of this pipeline records besides tensors."""
        return pipeline_manifest(self)

    def save(self, directory: str | Path) -> Path:
        """Write a weights-only checkpoint directory, atomically: enough to sample and evaluate,
        not to resume (``docs/reference/checkpoint.md``). It may replace an earlier ``save``,
        never a training run's checkpoint."""
        return save_pipeline(self, self._require_model(), directory)

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
        registry = get_registry() if registry is None else registry
        return load_pipeline(
            cls, path, manifest, tensors["model"], registry=registry, device=device
        )

    def _require_model(self) -> CharModel:
        if self.model is None:
            raise CharseqError("this pipeline has no model yet: call fit(text) or Pipeline.load()")
        return self.model

    def __repr__(self) -> str:
        cell = self.spec.cell
        return (
            f"Pipeline(tokenizer={self.spec.tokenizer.name!r}, cell={cell.name!r} "
            f"{cell.layout.num_layers}x{cell.layout.hidden_size}, "
            f"optimizer={self.spec.optimizer.name!r}, sampler={self.spec.sampler.name!r}, "
            f"fitted={self.model is not None})"
        )
