"""Evaluating a checkpoint on a split of its corpus (``charseq eval``)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from charseq.batches import evaluate_ids
from charseq.checkpoint import CheckpointError, read_manifest, resolve_checkpoint
from charseq.corpus_record import UnreadSourcesError
from charseq.errors import CharseqError, UnknownCharacterError
from charseq.pipeline import Pipeline, with_policy

SPLITS = ("train", "val", "test", "all")


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    files: Sequence[str | Path] | None = None,
    split: str = "test",
    device: torch.device | str | None = None,
    seq_len: int = 1024,
    unknown: str | None = None,
) -> dict[str, Any]:
    """nats/char and BPC of a checkpoint on one split of its corpus, or of other ``files``.

    The corpus comes from the run's cache (``RUN/cache``; the paths the checkpoint records are
    never read on its word: without a cache, the error names them), or ``files`` replaces it;
    it is split with the run's fractions; ``split="all"`` takes all of it. Evaluation is one
    stream over the whole split with the state carried, ``seq_len`` tokens at a time: every
    token after the first is predicted from all that precede it. ``unknown`` (``"error"``,
    ``"skip"`` or ``"replace"``) overrides the tokenizer's policy for characters outside its
    vocabulary, as :meth:`~charseq.Pipeline.score` does: with ``"skip"`` they are not counted.

    Returns:
        ``{"split", "nats", "bpc", "tokens", "checkpoint", "step", "tokenizer"}`` (the
        tokenizer's name: what a token is).
    """
    if split not in SPLITS:
        raise CharseqError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    path = resolve_checkpoint(checkpoint)
    manifest = read_manifest(path)
    pipe = Pipeline.load(path, device=device)
    if unknown is not None:
        pipe.tokenizer = with_policy(pipe.tokenizer, unknown)
    with ExitStack() as stack:
        cache = path.parent / "cache"
        if not cache.is_dir() or cache.is_symlink():  # never read or write through a link
            cache = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="charseq-")))
        try:
            ids, splits, _ = pipe.read_training_corpus(
                path, manifest, None, files, cache, same=files is None, split=split != "all"
            )
        except UnknownCharacterError as error:
            error.args = (f"{error} When evaluating: unknown='skip' or 'replace' (--unknown).",)
            raise
        except UnreadSourcesError as error:
            if split != "all":  # what the command line does with --data unless told
                error.args = (
                    f"{error}; charseq eval takes all of a --data text: add --split {split}",
                )
            raise
        ids = ids if splits is None else splits[split]
        if len(ids) < 2:
            train = pipe.spec.train
            raise CheckpointError(
                f"the text has {len(ids)} token(s): nothing to evaluate (the first token is "
                "predicted from nothing; it takes at least 2)"
                if splits is None
                else f"the {split} split has {len(ids)} token(s): nothing to evaluate (this "
                f"run's fractions: val {train.val_fraction}, test {train.test_fraction}); "
                f"evaluate another split ({', '.join(x for x in SPLITS if x != split)}: "
                "split=... in Python, --split on the command line)"
            )
        scores = evaluate_ids(
            pipe.model, ids, batch_size=1, seq_len=seq_len, warmup=0, device=pipe.device
        )
    tokenizer = pipe.spec.tokenizer.name
    return {
        "split": split,
        **scores,
        "checkpoint": str(path),
        "step": pipe.step,
        "tokenizer": tokenizer,
    }
