"""A training call on several processes: rank 0 owns the run directory and reads the corpus, the
other ranks follow.

Under torchrun every rank calls :meth:`Pipeline.fit <charseq.pipeline.Pipeline.fit>` (or
``resume``) with the same arguments. Rank 0 alone prepares and locks the run directory
(:func:`new_run_on`, :func:`resumed_run_on`) and reads the corpus into its id cache; the others
wait, then take its tokenizer and map that very cache (:func:`share_corpus`), so a corpus is
encoded once, whatever the number of processes. Whatever fails on one rank before training
fails on every rank (:func:`charseq.distributed.on_every_rank`), and the run directory is left
as it was.

With one process each function is its one-process counterpart.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from charseq.corpus import cached_corpus
from charseq.corpus.training import CorpusRead, read_corpus
from charseq.distributed import DistributedError, World, on_every_rank
from charseq.interfaces import Tokenizer
from charseq.run_transaction import RunSlot, new_run, resumed_run, temporary_cache
from charseq.spec import TrainSpec

__all__ = ["new_run_on", "resumed_run_on", "share_corpus"]


@contextmanager
def new_run_on(world: World, out: str | Path | None, overwrite: bool) -> Iterator[RunSlot]:
    """:func:`~charseq.run_transaction.new_run` on rank 0; the other ranks get a slot with no
    directory (they write nothing) whose cache is rank 0's, to read."""
    if not world.distributed:
        with new_run(out, overwrite) as slot:
            yield slot
        return
    with ExitStack() as stack:
        slot = on_every_rank(
            world,
            f"prepare the run directory {out}",
            lambda: stack.enter_context(new_run(out, overwrite)) if world.is_main else None,
        )
        yield _follow(world, stack, slot)


@contextmanager
def resumed_run_on(world: World, run_dir: Path, *, own_cache: bool) -> Iterator[RunSlot]:
    """:func:`~charseq.run_transaction.resumed_run` (the run locked) on rank 0; the other ranks
    read rank 0's cache, as for :func:`new_run_on`."""
    if not world.distributed:
        with resumed_run(run_dir, own_cache=own_cache) as slot:
            yield slot
        return
    with ExitStack() as stack:
        slot = on_every_rank(
            world,
            f"lock the run {run_dir}",
            lambda: (
                stack.enter_context(resumed_run(run_dir, own_cache=own_cache))
                if world.is_main
                else None
            ),
        )
        yield _follow(world, stack, slot)


def _follow(world: World, stack: ExitStack, slot: RunSlot | None) -> RunSlot:
    """Rank 0's ``slot``; on the other ranks a slot whose cache is rank 0's run cache, or a
    temporary one of their own when rank 0 has no run directory."""
    shared = world.broadcast(
        str(slot.cache.resolve()) if slot is not None and slot.directory is not None else None
    )
    if world.is_main:
        assert slot is not None
        return slot
    if shared is None:
        return RunSlot(None, stack.enter_context(temporary_cache()))
    return RunSlot(None, Path(shared), shared=True)


def share_corpus(
    world: World,
    read_here: Callable[[], CorpusRead],
    tokenizer: Tokenizer,
    train: TrainSpec,
    slot: RunSlot,
    *,
    text: str | None = None,
) -> CorpusRead:
    """The corpus every rank trains on: ``read_here()`` on rank 0 (it may fit the tokenizer
    and fill the cache); then, on the others, rank 0's tokenizer and its ids: mapped from rank
    0's cache for files, encoded from ``text`` (which must be the same) for a text.

    Raises:
        DistributedError: on every rank, when any rank could not read it (a rank that cannot
            see rank 0's cache, or that was given another text).
    """
    if not world.distributed:
        return read_here()
    read = on_every_rank(world, "read the corpus", lambda: read_here() if world.is_main else None)
    shared = world.broadcast(
        {"tokenizer": read.tokenizer.state_dict(), "record": read.record} if read else None
    )
    return on_every_rank(
        world,
        "take rank 0's corpus",
        lambda: read or _follow_corpus(tokenizer, train, shared, slot, text),
    )


def _follow_corpus(
    tokenizer: Tokenizer,
    train: TrainSpec,
    shared: dict[str, Any],
    slot: RunSlot,
    text: str | None,
) -> CorpusRead:
    """What rank 0 read (its tokenizer's state and its corpus record ``shared``), here."""
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.load_state_dict(shared["tokenizer"])
    record = shared["record"]
    if record["kind"] == "text":
        if text is None:
            raise DistributedError(
                "rank 0 trains on a text given in memory: give every rank the same text="
            )
        read = read_corpus(tokenizer, train, text=text, cache=slot.cache)
        if read.record["hash"] != record["hash"]:
            raise DistributedError(
                "this rank was given another text than rank 0 (its sha256 differs): every rank "
                "must train on the same text"
            )
        return read
    if slot.shared:
        corpus = cached_corpus(
            slot.cache, tokenizer, record["hash"], encoding=record.get("encoding") or "utf-8",
            normalize=record.get("normalize"),
        )  # fmt: skip
        if corpus is None:
            raise DistributedError(
                f"rank 0's corpus cache {slot.cache} is not there to read: on several "
                "machines, the run directory must be on a filesystem they all share"
            )
        splits = corpus.split(train.val_fraction, train.test_fraction)
        return CorpusRead(corpus.ids, splits, record, tokenizer)
    read = read_corpus(  # no run directory: each rank encodes the files into its own cache
        tokenizer, train, files=record["sources"], include=record.get("include") or ("*",),
        encoding=record.get("encoding") or "utf-8", normalize=record.get("normalize"),
        cache=slot.cache,
    )  # fmt: skip
    if read.record["hash"] != record["hash"]:
        raise DistributedError(
            "the corpus files this rank reads differ from rank 0's (their sha256 differs)"
        )
    return read
