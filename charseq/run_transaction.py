"""The run directory of one training call, as a transaction.

``fit(out=...)`` starts a run in ``out``: the directory is checked, emptied (a run it replaces
is kept aside) and locked. If the new run fails before its first checkpoint, ``out`` is as it
was: the replaced run is put back, or what the call created is removed. Once the new run has a
checkpoint, the replaced run is deleted; if the new run was interrupted, it is kept and a
warning says where (the overwrite may have been a mistake). ``resume`` holds the lock of the run
it continues. Without ``out``, the corpus cache lives in a temporary directory.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

from charseq.checkpoint import (
    LATEST_FILE,
    RunLock,
    clear_run_dir,
    prepare_run_dir,
    restore_run_dir,
)
from charseq.errors import warn


@attrs.define
class RunSlot:
    """Where one training call writes.

    Attributes:
        directory: the run directory, or ``None`` when nothing is kept.
        cache: where the corpus's id cache goes.
        interrupted: set by the caller when the run ended interrupted: a run it replaced is
            then kept, not deleted.
        shared: the cache is another process's (rank 0's, in a distributed run): read it,
            never write it.
    """

    directory: Path | None
    cache: Path
    interrupted: bool = False
    shared: bool = False


@contextmanager
def new_run(out: str | Path | None, overwrite: bool) -> Iterator[RunSlot]:
    """A new run in ``out`` (or none, for ``None``) for the duration of the block.

    On entry ``out`` is checked, emptied and locked (:func:`~charseq.checkpoint.prepare_run_dir`;
    ``overwrite`` lets it replace a run). If the block raises before the run's first checkpoint,
    ``out`` goes back to what it was. On exit a replaced run is deleted once the new run has a
    checkpoint (kept, with a warning, if :attr:`RunSlot.interrupted`), and the lock released.
    """
    if out is None:
        with temporary_cache() as cache:
            yield RunSlot(None, cache)
        return
    run_dir = Path(out)
    created = not run_dir.exists()
    replaced, lock = prepare_run_dir(run_dir, overwrite)
    slot = RunSlot(run_dir, run_dir / "cache")
    try:
        try:
            yield slot
        except BaseException:
            if not (run_dir / LATEST_FILE).exists():  # no run was made: as it was
                if replaced is not None:
                    _put_back(run_dir, replaced)
                else:
                    clear_run_dir(run_dir, remove=created)
            raise
        finally:
            if replaced is not None:
                _drop_replaced(replaced, run_dir, keep=slot.interrupted)
    finally:
        lock.release()


@contextmanager
def resumed_run(run_dir: Path, *, own_cache: bool) -> Iterator[RunSlot]:
    """The run in ``run_dir`` continued: locked for the block (one process per run directory);
    its own cache (``run_dir/cache``) if ``own_cache`` and that is not a link out of it, else a
    temporary one."""
    with RunLock(run_dir, resuming=True), run_cache(run_dir, use=own_cache) as cache:
        yield RunSlot(run_dir, cache)


@contextmanager
def run_cache(run_dir: Path, *, use: bool) -> Iterator[Path]:
    """``run_dir/cache`` if ``use`` and it is not a link (never read or write through one),
    else a temporary directory for the block."""
    cache = run_dir / "cache"
    if use and not cache.is_symlink():
        yield cache
        return
    with temporary_cache() as temporary:
        yield temporary


@contextmanager
def temporary_cache() -> Iterator[Path]:
    """A temporary directory for a corpus cache, removed after the block."""
    with tempfile.TemporaryDirectory(prefix="charseq-") as directory:
        yield Path(directory)


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
