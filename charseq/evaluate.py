"""Evaluating a checkpoint on a split of its corpus (``charseq eval``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from charseq.checkpoint import CheckpointError, read_checkpoint
from charseq.corpus.training import reread_corpus
from charseq.corpus_record import UnreadSourcesError
from charseq.dynamic_eval import DynamicEvalOptions, dynamic_evaluate_ids
from charseq.errors import CharseqError, UnknownCharacterError
from charseq.persist import load_pipeline
from charseq.pipeline import Pipeline
from charseq.progress import EVAL_PROGRESS_TOKENS, phase
from charseq.registry import get_registry
from charseq.requests import with_policy
from charseq.run_transaction import run_cache
from charseq.scoring import evaluate_ids

SPLITS = ("train", "val", "test", "all")
DYNAMIC_PROGRESS_TOKENS = 20_000
"""Dynamic evaluation shows a bar from this many tokens: it takes a gradient step every
segment, so it is much slower per token than the static pass."""


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    files: Sequence[str | Path] | None = None,
    split: str = "test",
    device: torch.device | str | None = None,
    seq_len: int = 1024,
    unknown: str | None = None,
    progress: bool | None = None,
    dynamic: bool | DynamicEvalOptions | Mapping[str, Any] = False,
) -> dict[str, Any]:
    """nats/char and BPC of a checkpoint on one split of its corpus, or of other ``files``.

    The corpus comes from the run's cache (``RUN/cache``; the paths the checkpoint records are
    never read on its word: without a cache, the error names them), or ``files`` replaces it;
    it is split with the run's fractions; ``split="all"`` takes all of it. Evaluation is one
    stream over the whole split with the state carried, ``seq_len`` tokens at a time: every
    token after the first is predicted from all that precede it. ``unknown`` (``"error"``,
    ``"skip"`` or ``"replace"``) overrides the tokenizer's policy for characters outside its
    vocabulary, as :meth:`~charseq.Pipeline.score` does: with ``"skip"`` they are not counted.
    ``progress`` shows bars on standard error while a large corpus is read and a large split
    evaluated: ``True``, ``False``, or ``None`` (the default, as ``charseq eval`` has it) for
    "when standard error is a terminal"; see :mod:`charseq.progress`.

    ``dynamic=True`` (or a dict of options, or
    :class:`~charseq.dynamic_eval.DynamicEvalOptions`) evaluates the split a second time with
    dynamic evaluation (:mod:`charseq.dynamic_eval`), over the same tokens; the ``"rms"``
    rule's gradient statistics come from the run's training split (from the split itself
    with ``split="all"`` or ``files``, which have none).

    Returns:
        ``{"split", "nats", "bpc", "tokens", "checkpoint", "step", "tokenizer"}`` (the
        tokenizer's name: what a token is); with ``dynamic``, also ``"dynamic"``: ``{"nats",
        "bpc", "tokens", "options", "statistics"}``, the last where the ``"rms"`` rule's
        gradient statistics came from (``"train"``, ``"self"`` for the evaluated text's first
        segments, ``None`` for ``"sgd"``).
    """
    if split not in SPLITS:
        raise CharseqError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    options = DynamicEvalOptions.of(dynamic)
    path, manifest, tensors = read_checkpoint(checkpoint, ["model"])  # one, even while written
    pipe = load_pipeline(
        Pipeline, path, manifest, tensors["model"], registry=get_registry(), device=device
    )
    if unknown is not None:
        pipe.tokenizer = with_policy(pipe.tokenizer, unknown)
    with run_cache(path.parent, use=(path.parent / "cache").is_dir()) as cache:
        try:
            read = reread_corpus(
                pipe.tokenizer,
                pipe.spec.train,
                path,
                manifest,
                files=files,
                cache=cache,
                same=files is None,
                split=split != "all",
                progress=progress,
            )
        except UnknownCharacterError as error:
            raise UnknownCharacterError(
                f"{error} When evaluating: unknown='skip' or unknown='replace'.",
                error.unknown,
                argument="unknown",
            ) from None
        except UnreadSourcesError as error:
            if split == "all":
                raise
            raise UnreadSourcesError(  # charseq eval takes all of a --data text unless told
                f"{error}, with split={split!r}", argument=("files", "split")
            ) from None
        splits = read.splits
        ids = read.ids if splits is None else splits[split]
        if len(ids) < 2:
            train = pipe.spec.train
            raise CheckpointError(
                f"the text has {len(ids)} token(s): nothing to evaluate (the first token is "
                "predicted from nothing; it takes at least 2)"
                if splits is None
                else f"the {split} split has {len(ids)} token(s): nothing to evaluate (this "
                f"run's fractions: val {train.val_fraction}, test {train.test_fraction}); "
                "evaluate another split ("
                + ", ".join(f"split={x!r}" for x in SPLITS if x != split)
                + ")",
                argument="split",
            )
        with phase(
            f"evaluating {split}",
            len(ids) - 1,
            unit="tok",
            show=progress,
            minimum=EVAL_PROGRESS_TOKENS,
        ) as advance:
            scores = evaluate_ids(
                pipe.model,
                ids,
                batch_size=1,
                seq_len=seq_len,
                warmup=0,
                device=pipe.device,
                on_batch=_reporter(advance),
            )
        if options is not None:
            statistics = None if splits is None else splits["train"]
            with phase(
                f"evaluating {split} dynamically",
                len(ids) - 1,
                unit="tok",
                show=progress,
                minimum=DYNAMIC_PROGRESS_TOKENS,
            ) as advance:
                adapted = dynamic_evaluate_ids(
                    pipe.model, ids, options, statistics=statistics, on_segment=_reporter(advance)
                )
            source = None if options.method != "rms" else "self" if splits is None else "train"
            scores["dynamic"] = {**adapted, "options": options.to_dict(), "statistics": source}
    tokenizer = pipe.spec.tokenizer.name
    return {
        "split": split,
        **scores,
        "checkpoint": str(path),
        "step": pipe.steps_trained,
        "tokenizer": tokenizer,
    }


def _reporter(advance: Callable[[int], None]) -> Callable[[int], None]:
    """A callback that takes the tokens scored so far and moves a bar (``advance``) by those
    scored since its last call."""
    scored = 0

    def report(done: int) -> None:
        nonlocal scored
        advance(done - scored)
        scored = done

    return report
