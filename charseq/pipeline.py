"""A pipeline: tokenizer, model, optimizer and sampler, composed from a spec.

>>> pipe = Pipeline.from_spec({"cell": {"name": "gru", "hidden_size": 32}})   # doctest: +SKIP
>>> pipe.fit(text).generate("ROMEO:", max_new_tokens=200)                      # doctest: +SKIP
"""

from __future__ import annotations

import copy as copy_module
import functools
import hashlib
import os
import shutil
import sys
import tempfile
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from charseq import __version__
from charseq.batches import evaluate_ids
from charseq.callbacks import Callback, shows_progress
from charseq.checkpoint import (
    LATEST_FILE,
    MODEL_FILE,
    CheckpointError,
    RunLock,
    check_latest_of_its_run,
    clear_run_dir,
    is_training_checkpoint,
    prepare_run_dir,
    read_checkpoint,
    read_manifest,
    recover_interrupted_save,
    resolve_checkpoint,
    restore_run_dir,
    write_checkpoint,
)
from charseq.constraints import (
    Constraints,
    GenerationError,
    apply_stop,
)
from charseq.corpus import (
    STDIN,
    EmptyCorpusError,
    Splits,
    find_sources,
    ids_dtype,
    prepare_corpus,
    split_ids,
)
from charseq.corpus_record import from_run_cache, recorded_corpus, unread_sources
from charseq.errors import CharseqError, SpecError, UnknownCharacterError, warn
from charseq.interfaces import KINDS, Sampler, Tokenizer
from charseq.model import CharModel
from charseq.options import short_repr
from charseq.plugin_records import (
    NOT_NEEDED,
    Absent,
    missing_plugins,
    pinned_spec,
    refuse_missing,
    source,
    warn_version_drift,
)
from charseq.registry import Registry, get_registry
from charseq.schedules import horizon_change
from charseq.scoring import UNITS, Score, score_ids
from charseq.spec import ComponentSpec, PipelineSpec
from charseq.stored_weights import check_stored_weights
from charseq.streaming import Generation, stream_text

MAX_NEW_TOKENS = 1_000_000
"""The most tokens one ``generate`` / ``stream`` call makes (a guard against a mistyped length)."""
DEVICE_TYPES = ("cpu", "cuda", "mps")
"""The kinds of device charseq trains and generates on."""
MAX_NUM_SAMPLES = 1_000_000
"""The most samples one ``generate`` call makes as a batch (a guard against a mistyped count)."""


class Pipeline:
    """Tokenizer, model, optimizer and sampler, built from one :class:`PipelineSpec`.

    Build with :meth:`from_spec` (then :meth:`fit`) or :meth:`load`.

    Attributes:
        spec: the validated spec.
        tokenizer: the tokenizer (fitted by :meth:`fit` or restored by :meth:`load`).
        model: the :class:`~charseq.model.CharModel`, or ``None`` until the vocabulary is known.
        device: where the model lives.
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
        self.device = _checked_device(device) if device is not None else _default_device()
        self.step = 0
        self.result: Any = None
        # The Unicode normalisation ("NFC", "NFKC") the training corpus was read with, if any;
        # primes and scored texts are normalised the same way before encoding.
        self.normalize: str | None = None
        # Kinds whose plugin a loaded checkpoint names but this registry lacks (an optimizer or
        # a sampler: sampling and evaluating need neither): kind -> what the checkpoint recorded.
        self._absent: dict[str, Absent] = {}
        if model is not None:
            model.to(self.device)

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
        if spec is None:
            spec = PipelineSpec.from_dict({}, registry)
        elif isinstance(spec, Mapping):
            spec = PipelineSpec.from_dict(spec, registry)
        elif isinstance(spec, str | Path):
            spec = PipelineSpec.from_file(spec, registry)
        elif not isinstance(spec, PipelineSpec):
            raise TypeError(f"spec must be a PipelineSpec, dict or path, got {type(spec).__name__}")
        tokenizer = _build(registry, "tokenizer", spec.tokenizer)
        return cls(spec, tokenizer, registry=registry, device=device)

    def build_model(self) -> CharModel:
        """A freshly initialised model for the fitted tokenizer's vocabulary."""
        return self._new_model().to(self.device)

    def _new_model(self) -> CharModel:
        """:meth:`build_model` on the current default device (``meta`` to measure it)."""
        if not self.tokenizer.is_fitted:
            raise CharseqError("the tokenizer has no vocabulary yet: call fit(text) first")
        cell = self.spec.cell
        component = self.registry.get("cell", cell.name)
        sizes = [self.spec.model.embedding_size] + [
            cell.layout.hidden_size
        ] * cell.layout.num_layers
        options = _kwargs(cell.options)
        cells = [
            component.factory(input_size, cell.layout.hidden_size, **options)
            for input_size in sizes[:-1]
        ]
        return CharModel(
            self.tokenizer.vocab_size,
            self.spec.model.embedding_size,
            cells,
            cell.layout.dropout,
            self.spec.model.embedding_dropout,
        )

    def build_optimizer(self, parameters: Any) -> torch.optim.Optimizer:
        """The spec's optimizer over ``parameters``."""
        self._check_present("optimizer", "train")
        return _build(self.registry, "optimizer", self.spec.optimizer, parameters)

    # -- training -----------------------------------------------------------------------------

    def fit(
        self,
        text: str | None = None,
        *,
        files: str | Path | Sequence[str | Path] | None = None,
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
        """Train on ``text`` or on ``files``; returns ``self`` (the run's end is in :attr:`result`).

        The corpus is split into train / val / test by ``train.val_fraction`` and
        ``train.test_fraction``; the tokenizer is fitted on the whole corpus and the model built
        on first use. ``files`` (paths, directories searched for ``include`` globs, or ``"-"`` for
        standard input) are streamed into a memory-mapped id cache under ``out/cache``, so a
        corpus larger than memory trains in bounded memory. A fresh run seeds torch's global
        random generator with ``train.seed`` (dropout draws from it).

        A fit that fails before training starts leaves the pipeline as it was (a fresh one gets
        its unfitted tokenizer back), and a run directory it created holds nothing until the
        first checkpoint: a failed start leaves no run behind.

        Args:
            text: the corpus as a string (for files, use ``files``).
            files: corpus files or directories.
            include: glob(s) a file in a directory of ``files`` must match (``"*"``: all).
            encoding: the text encoding ``files`` are read with.
            normalize: ``None``, or ``"NFC"`` or ``"NFKC"`` to normalise the text of ``files``.
            out: run directory for checkpoints (``step-XXXXXXXX/``, ``best/``, ``latest.json``),
                ``metrics.jsonl`` (unless a callback is a ``MetricsLog``) and the cache;
                nothing is written if ``None``. It must be new or empty: a directory holding a
                run is continued with :meth:`resume`, or replaced with ``overwrite``.
            overwrite: replace the run in ``out`` (only a charseq run is ever replaced). It is
                kept aside until the new run's first checkpoint, and put back if the new run
                fails before one.
            steps: optimizer steps to reach. It becomes the spec's ``train.steps`` (checkpoints
                record it), so a later ``fit`` goes on from :attr:`step` towards it.
            max_seconds: a training-time budget (default: the spec's ``train.max_seconds``);
                it becomes the spec's, like ``steps``.
            callbacks: :class:`~charseq.callbacks.Callback` objects told of progress.
            handle_signals: let Ctrl-C / SIGTERM stop training with a checkpoint.
        """
        from charseq.train import Trainer, check_precision

        spec = _with_budget(self.spec, self.registry, steps, max_seconds, self.step)
        check_precision(spec, self.device)  # before reading any corpus
        self._check_present("optimizer", "train")
        if any(getattr(c, "samples_with_the_spec", False) for c in callbacks):
            self._check_present("sampler", "sample during training")
        run_dir = None if out is None else Path(out)
        created = run_dir is not None and not run_dir.exists()
        before = (self.spec, self.model, _unfitted_copy(self.tokenizer), self.normalize)
        replaced, lock = None, None
        if run_dir is not None:  # checked, emptied (a replaced run kept aside) and locked
            replaced, lock = prepare_run_dir(run_dir, overwrite)
        self.spec = spec
        with ExitStack() as stack:
            if lock is not None:
                stack.callback(lock.release)  # last: after the replaced run is dealt with
            interrupted = False
            if replaced is not None:  # the replaced run goes once the new one has a checkpoint
                stack.callback(lambda: _drop_replaced(replaced, run_dir, keep=interrupted))
            started = False
            try:
                cache = run_dir / "cache" if run_dir else Path(stack.enter_context(_tempdir()))
                _, splits, corpus = self._corpus(
                    text,
                    files,
                    include,
                    encoding,
                    normalize,
                    cache,
                    progress=shows_progress(callbacks),
                )
                if self.model is None:
                    torch.manual_seed(spec.train.seed)
                    self.model = self.build_model()
                trainer = Trainer(
                    self,
                    splits,
                    out_dir=run_dir,
                    callbacks=callbacks,
                    corpus=corpus,
                    handle_signals=handle_signals,
                )
                started = True
                self.result = trainer.run()
                interrupted = self.result.reason == "interrupted"
            except BaseException as error:
                if run_dir is not None and not (run_dir / LATEST_FILE).exists():  # no run
                    if replaced is not None:  # the run it was to replace comes back
                        _put_back(run_dir, replaced)
                    else:
                        clear_run_dir(run_dir, remove=created)
                if not started:
                    self._undo_start(before, error)
                raise
        return self

    def _undo_start(
        self, before: tuple[PipelineSpec, Any, Tokenizer | None, str | None], error: BaseException
    ) -> None:
        """Leave the pipeline as it was before a fit that failed to start; say so when the
        corpus did not fit a vocabulary fixed earlier."""
        self.spec, self.model, unfitted, self.normalize = before
        if unfitted is not None:  # this fit may have fitted it in place: the copy from before
            self.tokenizer = unfitted
        elif isinstance(error, UnknownCharacterError):
            error.args = (_FIXED_VOCABULARY + str(error),)

    @classmethod
    def resume(
        cls,
        checkpoint: str | Path,
        *,
        text: str | None = None,
        files: str | Path | Sequence[str | Path] | None = None,
        steps: int | None = None,
        max_seconds: float | None = None,
        callbacks: Sequence[Callback] = (),
        handle_signals: bool = False,
        registry: Registry | None = None,
        device: torch.device | str | None = None,
    ) -> Pipeline:
        """Continue a run exactly where ``checkpoint`` (a checkpoint or run directory) left off.

        The corpus comes from the run's cache (``RUN/cache``), or from ``files`` / ``text``,
        and must be the one it was trained on (same hash); the paths the checkpoint records are
        never read on its word (without a cache, the error names them: pass them as ``files``).
        New checkpoints go to the same run directory. ``steps`` and ``max_seconds`` may be
        raised; every other setting is the checkpoint's.
        """
        from charseq.train import Trainer, training_state

        recover_interrupted_save(checkpoint)  # a run killed mid-save is whole again
        path = resolve_checkpoint(checkpoint)
        manifest = read_manifest(path)
        _check_pipeline_fields(path, manifest)
        training_state(path, manifest)
        check_latest_of_its_run(path, manifest)
        registry = get_registry() if registry is None else registry
        refuse_missing(registry, missing_plugins(registry, manifest))  # training needs all
        pipe = cls.load(path, registry=registry, device=device)
        pipe.spec = _with_budget(pipe.spec, pipe.registry, steps, max_seconds, pipe.step)
        run_dir = path.parent
        with ExitStack() as stack:
            stack.enter_context(RunLock(run_dir, resuming=True))  # one process per run directory
            cache = run_dir / "cache"
            if text is not None or cache.is_symlink():  # never write through a link out of it
                cache = Path(stack.enter_context(_tempdir()))
            _, splits, corpus = pipe.read_training_corpus(
                path, manifest, text, files, cache, same=True, progress=shows_progress(callbacks)
            )
            trainer = Trainer(
                pipe,
                splits,
                out_dir=run_dir,
                callbacks=callbacks,
                corpus=corpus,
                handle_signals=handle_signals,
            )
            trainer.restore(path, manifest)
            pipe.result = trainer.run()
        return pipe

    def _corpus(
        self,
        text: str | None,
        files: Any,
        include: Sequence[str],
        encoding: str,
        normalize: str | None,
        cache: Path,
        *,
        split: bool = True,
        progress: bool | None = False,
    ) -> tuple[np.ndarray, Splits | None, dict[str, Any]]:
        """Read, fit the tokenizer on (if it has no vocabulary), encode and split the corpus.

        Returns the ids, their splits (``None`` without ``split``: a text too small to split
        can still be evaluated whole), and what a checkpoint records about the corpus.
        ``progress``: show bars while a large corpus of files is read (see
        :func:`~charseq.corpus.prepare_corpus`).
        """
        train = self.spec.train
        if (text is None) == (files is None):
            raise CharseqError("fit needs a corpus: pass text=... or files=... (one of them)")
        if text is not None:
            if not isinstance(text, str):
                raise CharseqError(
                    f"text must be a str, got {type(text).__name__}; for paths use files=..."
                )
            if not self.tokenizer.is_fitted:
                self.tokenizer.fit(text)
            ids = np.asarray(
                self.tokenizer.encode_array(text), dtype=ids_dtype(self.tokenizer.vocab_size)
            )
            digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
            info = {"kind": "text", "hash": digest}
            splits = split_ids(ids, train.val_fraction, train.test_fraction) if split else None
            return ids, splits, info
        paths = [files] if isinstance(files, str | Path) else list(files)
        sources = find_sources(paths, tuple(include), encoding=encoding)
        corpus = prepare_corpus(
            sources,
            self.tokenizer,
            cache,
            encoding=encoding,
            normalize=normalize,
            progress=progress,
        )
        self.normalize = normalize
        info = {
            "kind": "files",
            "sources": [_absolute(source) for source in sources],  # readable from any directory
            "include": list(include),
            "encoding": encoding,
            "normalize": normalize,
            "hash": corpus.hash,
        }
        splits = corpus.split(train.val_fraction, train.test_fraction) if split else None
        return corpus.ids, splits, info

    def read_training_corpus(
        self,
        path: Path,
        manifest: dict[str, Any],
        text: str | None,
        files: Any,
        cache: Path,
        *,
        same: bool,
        split: bool = True,
        progress: bool | None = False,
    ) -> tuple[np.ndarray, Splits | None, dict[str, Any]]:
        """The corpus a checkpoint was trained on: from ``text`` / ``files`` if given, else
        from the run's cache (``cache``), never from the paths the manifest names (see
        :mod:`charseq.corpus_record`; only standard input, which the user pipes, is read again).
        With ``same``, it must be that very text (same hash). Without ``split`` the splits are
        ``None`` (see :meth:`_corpus`)."""
        recorded = recorded_corpus(path, manifest)
        if text is None and files is None:
            if recorded.get("kind") != "files":
                what = (
                    "was trained on text given in memory, not on files it can name"
                    if recorded.get("kind") == "text"
                    else "records no corpus (a weights-only export, written by Pipeline.save)"
                )
                raise CheckpointError(f"{path} {what}: {_GIVE_CORPUS}")
            corpus = from_run_cache(cache, self.tokenizer, recorded, manifest)
            if corpus is not None:
                self.normalize = recorded["normalize"]
                train = self.spec.train
                splits = corpus.split(train.val_fraction, train.test_fraction) if split else None
                info = {k: recorded.get(k) for k in _RECORDED}
                return corpus.ids, splits, info
            files = recorded["sources"]
            if files != [STDIN]:
                raise unread_sources(path, files)
            if sys.stdin is None or sys.stdin.isatty():
                raise CheckpointError(f"{path} {_STDIN_RUN}")
        try:
            ids, splits, info = self._corpus(
                text,
                files,
                recorded.get("include") or ("*",),
                recorded.get("encoding") or "utf-8",
                recorded.get("normalize"),
                cache,
                split=split,
                progress=progress,
            )
        except EmptyCorpusError as error:
            if text is None and STDIN in files:
                raise CheckpointError(f"{error}; {path} {_STDIN_RUN}") from None
            raise
        if same and info["hash"] != recorded.get("hash"):
            raise CheckpointError(
                f"the corpus changed since {path} was written (its sha256 differs), so its "
                "splits and data cursor no longer line up"
            )
        return ids, splits, info

    def evaluate(self, text: str, chunk_size: int = 8192) -> dict[str, float]:
        """Cross-entropy of ``text`` under the model: ``{"nats", "bpc", "tokens"}``.

        One stream, read ``chunk_size`` tokens at a time with the state carried, so every
        token after the first is predicted from all that precede it, in bounded memory.
        """
        model = self._require_model()
        ids = np.asarray(self._encode(text, "the text to evaluate", None))  # normalised as trained
        if ids.size < 2:
            raise CharseqError("evaluate needs a text of at least 2 tokens")
        return evaluate_ids(
            model, ids, batch_size=1, seq_len=chunk_size, warmup=0, device=self.device
        )

    # -- generation ---------------------------------------------------------------------------

    def generate(
        self,
        prime: str = "",
        max_new_tokens: int = 200,
        *,
        sampler: Sampler | str | Mapping[str, Any] | None = None,
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
        job = self._generation(
            prime,
            max_new_tokens,
            sampler,
            seed,
            1 if num_samples is None else num_samples,
            stop,
            allowed,
            acrostic,
            unknown,
        )
        out = job.run(max_new_tokens)
        texts = [apply_stop(self.tokenizer.decode(row.tolist()), job.stop) for row in out.ids]
        return texts if num_samples is not None or len(texts) > 1 else texts[0]

    def stream(
        self,
        prime: str = "",
        max_new_tokens: int = 200,
        *,
        sampler: Sampler | str | Mapping[str, Any] | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        allowed: str | None = None,
        acrostic: str | None = None,
        unknown: str | None = None,
    ) -> Iterator[str]:
        """Like :meth:`generate` for one sample, but yield the text in pieces as it is made.

        The request is checked here, before the first piece. Joined, the pieces equal what
        :meth:`generate` returns with the same arguments and seed. A token-by-token sampler
        (greedy, temperature, any :class:`~charseq.interfaces.TokenSampler`) yields a piece
        per token, except that text which could be the start of a stop string is held back
        until it is known not to be. Beam search knows its best sequence only at the end, so
        with beams the whole text comes as one piece at the end (the best sequence only, even
        with ``num_return_sequences``). A token sampler runs in the caller's thread, a step
        at a time as pieces are taken; any other sampler runs in a worker thread. Closing the
        iterator early stops generation at the next token.
        """
        job = self._generation(
            prime, max_new_tokens, sampler, seed, 1, stop, allowed, acrostic, unknown
        )
        return stream_text(job, self.tokenizer, max_new_tokens)

    def _generation(
        self,
        prime: str,
        max_new_tokens: int,
        sampler: Sampler | str | Mapping[str, Any] | None,
        seed: int | None,
        batch: int,
        stop: str | Sequence[str] | None,
        allowed: str | None,
        acrostic: str | None,
        unknown: str | None,
    ) -> Generation:
        """Check a generation request and prepare it, before any generation."""
        model = self._require_model()
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
            raise GenerationError(
                f"max_new_tokens must be an int, got {type(max_new_tokens).__name__} "
                f"{max_new_tokens!r}"
            )
        if not 0 <= max_new_tokens <= MAX_NEW_TOKENS:
            raise GenerationError(
                f"max_new_tokens must be in [0, {MAX_NEW_TOKENS}] (MAX_NEW_TOKENS, a guard "
                f"against a mistyped length), got {short_repr(max_new_tokens)}"
            )
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise GenerationError(f"num_samples must be an int >= 1, got {short_repr(batch)}")
        if batch > MAX_NUM_SAMPLES:
            raise GenerationError(
                f"num_samples must be at most {MAX_NUM_SAMPLES} (MAX_NUM_SAMPLES, a guard against "
                f"a mistyped count), got {short_repr(batch)}"
            )
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 1 << 63
        ):
            raise GenerationError(
                f"seed must be an int in [0, 2**63) (as train.seed), got {type(seed).__name__} "
                f"{short_repr(seed)}"
            )
        if not isinstance(prime, str):
            raise GenerationError(f"prime must be a str, got {type(prime).__name__}")
        sampler_object = self._sampler(sampler)
        if batch > 1 and sampler_object.deterministic:
            warn(
                f"{type(sampler_object).__name__} is deterministic: the {batch} samples from one "
                "prime are identical (beam search's num_return_sequences gives different "
                "sequences)"
            )
        prime_ids = torch.tensor(self._encode(prime, "the prime", unknown), dtype=torch.long)
        constraints = Constraints(stop=stop, allowed=allowed, acrostic=acrostic)
        compiled = constraints.compile(self.tokenizer, prime) if constraints.active else None
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        return Generation(
            model, prime_ids, sampler_object, generator, compiled, constraints.stop, batch
        )

    def _encode(self, text: str, what: str, unknown: str | None) -> list[int]:
        """``text`` as ids, with ``unknown`` overriding the tokenizer's policy; an error names
        ``what`` was being encoded and how to get past unknown characters."""
        tokenizer = self.tokenizer if unknown is None else with_policy(self.tokenizer, unknown)
        if self.normalize and isinstance(text, str):
            text = unicodedata.normalize(self.normalize, text)  # as the corpus was
        try:
            return tokenizer.encode(text)
        except UnknownCharacterError as error:
            message = str(error)
            if message.startswith("the text "):
                message = what + message[len("the text") :]
            else:
                message = f"{what}: {message}"
            error.args = (
                f"{message} From the command line: --unknown skip (drop them) or "
                "--unknown replace.",
            )
            raise error from None

    def sampler_section(self) -> dict[str, Any]:
        """The spec's sampler as a table (``name`` and options), to adjust and pass as
        ``sampler=...``; refused when it is a loaded checkpoint's sampler whose plugin is not
        installed here (another sampler must then be named)."""
        self._check_present("sampler", _OWN_SAMPLER)
        return self.spec.sampler.to_dict()

    def _sampler(self, sampler: Sampler | str | Mapping[str, Any] | None) -> Sampler:
        if isinstance(sampler, Sampler):
            return sampler
        if sampler is None:
            self._check_present("sampler", _OWN_SAMPLER)
            return _build(self.registry, "sampler", self.spec.sampler)
        if not isinstance(sampler, str | Mapping):
            raise GenerationError(
                f"sampler must be a name, a table with a name and options, or a Sampler, got "
                f"{type(sampler).__name__} {sampler!r}"
            )
        section = {"name": sampler} if isinstance(sampler, str) else dict(sampler)
        spec = PipelineSpec.from_dict({"sampler": section}, self.registry).sampler
        return _build(self.registry, "sampler", spec)

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
        model = self._require_model()
        if not isinstance(text, str):
            raise CharseqError(f"score needs a str, got {type(text).__name__}")
        if not text:
            raise CharseqError("score needs a non-empty text")
        if isinstance(top, bool) or not isinstance(top, int) or top < 0:
            raise CharseqError(f"top must be an int >= 0, got {top!r}")
        ids = self._encode(text, "the text to score", unknown)
        if not ids:
            raise CharseqError("score: nothing of the text is left once unknown characters go")
        prime_ids = self._encode(prime, "the prime", unknown)
        tokens = [self.tokenizer.decode([i]) for i in ids]
        return score_ids(
            model,
            torch.tensor(ids, dtype=torch.long),
            torch.tensor(prime_ids, dtype=torch.long),
            tokens,
            top=top,
            chunk_size=chunk_size,
            unit=UNITS.get(self.spec.tokenizer.name, ""),  # "": told by the token texts
        )

    # -- saving -------------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        """What a checkpoint of this pipeline records besides tensors."""
        return {
            "charseq_version": __version__,
            "spec": self._recorded_spec(),
            "tokenizer": self.tokenizer.state_dict(),
            "vocab_size": self.tokenizer.vocab_size,
            "step": self.step,
            "plugins": self._owners(),
            "normalize": self.normalize,
        }

    def save(self, directory: str | Path) -> Path:
        """Write a checkpoint directory (safetensors weights + JSON manifest), atomically.

        It holds weights only: enough to sample and evaluate. Training runs
        (:meth:`fit` with ``out``) write checkpoints that also resume exactly; ``save`` never
        replaces one of those (an earlier ``save`` it does replace).
        """
        model = self._require_model()
        if is_training_checkpoint(Path(directory)):
            raise CheckpointError(
                f"{directory} is a training checkpoint (it resumes a run); save writes weights "
                "only and would replace it: save to another directory"
            )
        return write_checkpoint(directory, {"model": model.state_dict()}, self.manifest())

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        registry: Registry | None = None,
        device: torch.device | str | None = None,
    ) -> Pipeline:
        """Rebuild a pipeline from a checkpoint, or from a run directory's latest checkpoint.

        Tensors are read on the CPU, then moved to ``device``; nothing is unpickled. The
        checkpoint's tokenizer and cell plugins must be installed. Its optimizer and sampler
        plugins need not be (sampling and evaluating use neither): the defaults stand in, with a
        warning, and training or sampling with the checkpoint's own sampler is refused until
        they are installed; :meth:`save` records them as the checkpoint did.

        A run that a process is training into (or its ``best``) loads too: the checkpoint is
        read once, consistently (:func:`~charseq.checkpoint.read_checkpoint`).
        """
        path, manifest, tensors = read_checkpoint(directory, ["model"])
        return cls._from_checkpoint(
            path, manifest, tensors["model"], registry=registry, device=device
        )

    @classmethod
    def _from_checkpoint(
        cls,
        path: Path,
        manifest: dict[str, Any],
        weights: dict[str, torch.Tensor],
        *,
        registry: Registry | None = None,
        device: torch.device | str | None = None,
    ) -> Pipeline:
        """:meth:`load` from a checkpoint already read: its directory, manifest and weights
        (:func:`~charseq.checkpoint.read_checkpoint`, one consistent read)."""
        registry = get_registry() if registry is None else registry
        _check_pipeline_fields(path, manifest)
        missing = missing_plugins(registry, manifest)
        refuse_missing(registry, {k: v for k, v in missing.items() if k not in NOT_NEEDED})
        data = pinned_spec(registry, manifest)
        for kind in missing:  # an optimizer or sampler: stand in with the default, and say so
            data[kind] = None
        try:
            spec = PipelineSpec.from_dict(data, registry)
        except SpecError as error:
            raise CheckpointError(f"{path}: its spec no longer validates: {error}") from None
        pipe = cls.from_spec(spec, registry=registry, device="cpu")
        warn_version_drift(path, registry, manifest, missing)
        for kind, owner in missing.items():
            section = manifest.get("spec", {}).get(kind)
            pipe._absent[kind] = Absent(section, owner, getattr(spec, kind))
        if missing:
            named = " and ".join(
                f"{kind} {owner.get('name')!r} from {source(owner)}"
                for kind, owner in missing.items()
            )
            needs = " or ".join(
                "to train" if kind == "optimizer" else "to sample with its own sampler"
                for kind in missing
            )
            warn(
                f"{path} names {named}, not installed here: loaded to sample and evaluate; "
                f"install {'it' if len(missing) == 1 else 'them'} {needs}"
            )
        try:
            pipe.tokenizer.load_state_dict(manifest["tokenizer"])
        except Exception as error:  # a plugin's own error: say whose state it was
            owner = manifest.get("plugins", {}).get("tokenizer", {})
            raise CheckpointError(
                f"{path}: tokenizer {spec.tokenizer.name!r} could not load its state "
                f"({type(error).__name__}: {error}); it was written by {source(owner)}, and "
                f"{registry.get('tokenizer', spec.tokenizer.name).owner} is installed"
            ) from error
        cell = registry.get("cell", spec.cell.name).factory
        check_stored_weights(  # before anything the spec implies is allocated
            path / MODEL_FILE,
            weights,
            spec,
            functools.partial(cell, **_kwargs(spec.cell.options)),
            pipe._new_model,
        )
        model = pipe.build_model()
        try:
            model.load_state_dict(weights)
        except RuntimeError as error:
            raise CheckpointError(f"{path}: weights do not fit the spec: {error}") from None
        pipe.model = model
        pipe.step = int(manifest.get("step", 0))
        pipe.normalize = manifest.get("normalize", manifest.get("corpus", {}).get("normalize"))
        pipe.device = _checked_device(device) if device is not None else _default_device()
        model.to(pipe.device)
        return pipe

    def _owners(self) -> dict[str, dict[str, str]]:
        owners = {}
        for kind in ("tokenizer", "cell", "optimizer", "sampler"):
            absent = self._standing_in(kind)
            if absent is not None:
                owners[kind] = dict(absent.owner)
                continue
            section: ComponentSpec = getattr(self.spec, kind)
            owner = self.registry.get(kind, section.name).owner
            owners[kind] = {"name": section.name, **attrs.asdict(owner)}
        return owners

    def _standing_in(self, kind: str) -> Absent | None:
        """What the loaded checkpoint recorded for ``kind``, if its plugin is absent and the spec
        still names the default that stands in for it."""
        absent = self._absent.get(kind)
        # By name: a changed option (lr, temperature) does not make the stand-in the choice.
        if absent is None or getattr(self.spec, kind).name != absent.stand_in.name:
            return None
        return absent

    def _check_present(self, kind: str, to: str) -> None:
        absent = self._standing_in(kind)
        if absent is not None:
            name = absent.owner.get("name")
            raise CharseqError(
                f"this pipeline was loaded without {kind} {name!r} from "
                f"{source(absent.owner)}, which is not installed: install it to {to}, or "
                f"choose another {kind}"
                + (" (sampler=... / --sampler)" if kind == "sampler" else " in the spec")
            )

    def _recorded_spec(self) -> dict[str, Any]:
        """The spec as a checkpoint records it: an absent plugin's section as it was loaded."""
        data = self.spec.to_dict()
        for kind in self._absent:
            absent = self._standing_in(kind)
            if absent is not None and absent.section is not None:
                data[kind] = absent.section
        return data

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


def _build(registry: Registry, kind: str, section: ComponentSpec, *args: Any) -> Any:
    component = registry.get(kind, section.name)
    return component.factory(*args, **_kwargs(section.options))


def _kwargs(options: Any) -> dict[str, Any]:
    """An options instance as the keyword arguments of its component's factory."""
    return attrs.asdict(options, recurse=False)


_RECORDED = ("kind", "sources", "include", "encoding", "normalize", "hash")
"""What a checkpoint records about a corpus of files (besides the splits' bounds)."""

_OWN_SAMPLER = "sample with the checkpoint's own sampler"

_STDIN_RUN = (
    "was trained on standard input: pipe the same text in again, or give the corpus "
    "(--data on the command line, files=... in Python)"
)


def _check_pipeline_fields(path: Path, manifest: Mapping[str, Any]) -> None:
    """Refuse a manifest whose pipeline fields (written by :meth:`Pipeline.manifest`) are
    missing or of the wrong kind: a hand edit, or a checkpoint that is not a pipeline's."""
    problems = []
    if not isinstance(manifest.get("spec"), dict):
        problems.append("no spec (a table)")
    if not isinstance(manifest.get("tokenizer"), dict):
        problems.append("no tokenizer state (a table)")
    step = manifest.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        problems.append(f"step {step!r} (an int >= 0 expected)")
    normalize = manifest.get("normalize")
    if normalize not in (None, "NFC", "NFKC"):
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


def _checked_device(device: torch.device | str) -> torch.device:
    """``device`` as a torch device, if this machine has it."""
    try:
        checked = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise CharseqError(f"unknown device {device!r}: {error}") from None
    if checked.type not in DEVICE_TYPES:  # torch names more (xla, vulkan, meta: no data)
        raise CharseqError(
            f"device {str(checked)!r}: charseq runs on {', '.join(DEVICE_TYPES)} "
            "(cuda:N for one GPU of several)"
        )
    if checked.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is a CPU-only build" if torch.version.cuda is None else "no CUDA GPU"
            raise CharseqError(f"device {str(checked)!r} was asked for, but {why}; use 'cpu'")
        if checked.index is not None and checked.index >= torch.cuda.device_count():
            raise CharseqError(
                f"device {str(checked)!r} was asked for, but there are "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    if checked.type == "mps" and not torch.backends.mps.is_available():
        raise CharseqError(f"device {str(checked)!r} was asked for, but MPS is not available")
    return checked


def _default_device() -> torch.device:
    """The best device found: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


_GIVE_CORPUS = (
    "give the corpus (Pipeline.resume(..., text=... or files=...), "
    "evaluate_checkpoint(..., files=...), or --data on the command line)"
)
_FIXED_VOCABULARY = (
    "this pipeline's vocabulary was fixed before this fit (by an earlier fit, or by the "
    "checkpoint it was loaded from), and the corpus has tokens outside it; a new "
    "Pipeline.from_spec(...) fits a vocabulary of its own. "
)


def _absolute(source: str | Path) -> str:
    """A corpus source as a checkpoint records it: an absolute path, or ``"-"`` (stdin)."""
    return STDIN if os.fspath(source) == STDIN else str(Path(source).resolve())


def _unfitted_copy(tokenizer: Tokenizer) -> Tokenizer | None:
    """A copy of a tokenizer a fit is about to fit in place, or ``None`` if it is fitted."""
    return None if tokenizer.is_fitted else copy_module.deepcopy(tokenizer)


def _drop_replaced(replaced: Path, run_dir: Path, *, keep: bool = False) -> None:
    """Delete the run a new one replaced, once the new one has a checkpoint; ``keep`` it (and
    say where) if the new run was interrupted, which may mean the overwrite was a mistake."""
    if not (replaced.exists() and (run_dir / LATEST_FILE).exists()):
        return
    if keep:
        warn(
            f"the new run in {run_dir} was interrupted, so the run it replaced is kept, in "
            f"{replaced}: move it back if the overwrite was a mistake, or delete it"
        )
        return
    shutil.rmtree(replaced, ignore_errors=True)


def _put_back(run_dir: Path, replaced: Path) -> None:
    """Move a replaced run back; if that fails, say where it is rather than hide the error
    that stopped the new run."""
    try:
        restore_run_dir(run_dir, replaced)
    except OSError as error:
        warn(f"could not put the replaced run back in {run_dir} ({error}); it is in {replaced}")


def _with_budget(
    spec: PipelineSpec,
    registry: Registry,
    steps: int | None,
    max_seconds: float | None,
    step: int,
) -> PipelineSpec:
    """``spec`` with ``train.steps`` and ``train.max_seconds`` set where given; a warning if
    that moves the end of the schedule of a run at ``step`` (see ``train.schedule_steps``)."""
    changes = {"train.steps": steps, "train.max_seconds": max_seconds}
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return spec
    changed = spec.override(changes, registry)
    note = horizon_change(spec.train, changed.train, step)
    if note is not None:
        warn(note)
    return changed


def _tempdir() -> Any:
    return tempfile.TemporaryDirectory(prefix="charseq-")


def with_policy(tokenizer: Tokenizer, unknown: str) -> Tokenizer:
    """A copy of ``tokenizer`` with its ``unknown`` policy set to ``unknown``."""
    if unknown not in ("error", "skip", "replace"):
        raise GenerationError(f"unknown must be 'error', 'skip' or 'replace', got {unknown!r}")
    state = tokenizer.state_dict()
    if "unknown" not in state:
        if unknown == "error":
            return tokenizer
        if state.get("type") == "byte":  # the byte tokenizer's state (the core imports no builtin)
            warn(
                "the byte tokenizer has no unknown characters (every text encodes, as its UTF-8 "
                f"bytes): unknown={unknown!r} changes nothing"
            )
            return tokenizer
        raise GenerationError(
            f"this tokenizer ({type(tokenizer).__name__}) has no unknown-character policy to set"
        )
    copy = copy_module.deepcopy(tokenizer)
    try:
        copy.load_state_dict({**state, "unknown": unknown})
        return copy
    except CharseqError:
        if unknown != "replace":
            raise
    vocab = state.get("vocab", [])  # replace with a character the model knows
    for candidate in ("\ufffd", "?", " ", "_"):
        if candidate in vocab:
            copy.load_state_dict({**state, "unknown": "replace", "replacement": candidate})
            return copy
    raise GenerationError(
        "unknown='replace' needs a replacement character in the vocabulary and this one has "
        "none of U+FFFD, '?', ' ', '_': use unknown='skip'"
    )
