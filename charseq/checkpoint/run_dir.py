"""A run directory's rules: starting, replacing and resuming a run in a directory without losing
one already there, and the lock that keeps one process training into it.

A run's checkpoints themselves (``step-*``, ``best/``, ``latest.json``) are kept by
:class:`~charseq.checkpoint.run.CheckpointStore`.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: runs are not locked
    fcntl = None  # type: ignore[assignment]

from charseq.checkpoint.directory import (
    MANIFEST_FILE,
    CheckpointError,
    read_manifest,
    recover_leftovers,
)
from charseq.checkpoint.run import LATEST_FILE, CheckpointStore
from charseq.checks import is_int
from charseq.errors import warn

LOCK_FILE = ".charseq.lock"
_EARLY = re.compile(
    r"cache|metrics\.jsonl|\.charseq\.lock|\.write-test-\w+|\..+\.(?:tmp|old|trash)-\w+"
)
"""What a run writes into its directory before its first checkpoint (the lock first of all)."""
_CHECKPOINTS = re.compile(r"step-\d+|best|latest\.json")
"""What its checkpoints add; anything else in a run directory is the user's."""
_CACHED = re.compile(r"\.?[0-9a-f]{32}\.(?:ids|json)(?:\.tmp-\w+)?|\.stdin-\w+\.tmp")
"""The files of a run's corpus cache (and their temporary names)."""


def check_run_dir(out: Path, overwrite: bool) -> None:
    """Refuse ``out`` for a new run unless it is new or empty, or (with ``overwrite``) a charseq
    run; changes nothing. So no run is ever mixed into another, or anything else replaced.

    The refusals name the ways out as Python arguments (``out=...``, ``overwrite=True``,
    ``Pipeline.resume(...)``; ``CharseqError.argument``), which the command
    line shows as its flags.
    """
    at = f"out={str(out)!r}"
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{at} is a file, not a directory", argument="out")
    if not out.is_dir() or not any(out.iterdir()):
        return
    run = _is_run(out)
    foreign = sorted(
        child.name
        for child in out.iterdir()
        if not (_EARLY.fullmatch(child.name) or (run and _CHECKPOINTS.fullmatch(child.name)))
    )
    if not run and not (out / LOCK_FILE).is_file():
        foreign = foreign or ["no checkpoint and no lock file"]  # charseq locks before it writes
    cache = out / "cache"
    if cache.exists() or cache.is_symlink():
        cached = cache.is_dir() and not cache.is_symlink()
        if not cached or not all(
            _CACHED.fullmatch(c.name) and c.is_file() and not c.is_symlink()
            for c in cache.iterdir()
        ):
            foreign.append("cache (not a corpus cache)")
    if foreign and not run:
        raise CheckpointError(
            f"{at} is not empty and is not a charseq run; choose a new or empty directory "
            "(nothing else is ever replaced)",
            argument="out",
        )
    if foreign:
        raise CheckpointError(
            f"{at} holds a run and also files that are not charseq's ({_listed(foreign)}); "
            "overwrite=True replaces a run and nothing else: move them out first, or choose "
            "another out=...",
            argument=("out", "overwrite"),
        )
    if _locked(out):
        raise RunLockedError(_locked_message(out), argument="out")
    if not overwrite:
        if not run:  # only what charseq writes, and no checkpoint: a run stopped early
            raise CheckpointError(
                f"{at} holds what a run left before its first checkpoint "
                f"({_listed(sorted(c.name for c in out.iterdir()))}); replace it with "
                "overwrite=True, or choose another out=...",
                argument=("out", "overwrite"),
            )
        raise CheckpointError(
            f"{at} already holds a run; continue it with Pipeline.resume({str(out)!r}), "
            "replace it with overwrite=True, or choose another out=...",
            argument=("out", "resume", "overwrite"),
        )


def _listed(names: list[str]) -> str:
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


class RunLockedError(CheckpointError):
    """Another process is training into the run directory now."""


def _locked_message(run_dir: Path, *, resuming: bool = False) -> str:
    """Why ``run_dir`` is refused: a new run may choose another ``out`` (the error names it as
    its argument); a resume has only the run it names."""
    if resuming:
        return (
            f"another process is training into {run_dir} now; resume it once that process has "
            "finished (one process trains a run at a time)"
        )
    return (
        f"another process is training into out={str(run_dir)!r} now; wait for it to finish, "
        "or choose another out=..."
    )


_NO_LOCKS = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}
"""``flock`` errors of a file system without locks (some network and FUSE mounts)."""


class RunLock:
    """An exclusive advisory lock (``flock``) on a run directory's ``.charseq.lock``, held by the
    process training into it until :meth:`release`, so that a second one (a new run, an
    ``overwrite``, a resume) is refused with :class:`RunLockedError` instead of mixing its
    checkpoints into the first's. Where there are no such locks (Windows, a file system without
    them: then with a warning), nothing is locked. ``resuming``: the caller continues this run
    (it has no other directory to choose; else the refusal names ``out``).
    """

    def __init__(self, run_dir: Path, *, resuming: bool = False) -> None:
        self.handle: int | None = None
        if fcntl is None:
            return
        handle = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise RunLockedError(
                _locked_message(run_dir, resuming=resuming),
                argument=None if resuming else "out",
            ) from None
        except OSError as error:
            os.close(handle)
            if error.errno not in _NO_LOCKS:
                raise
            warn(
                f"{run_dir}: this file system has no file locks ({error.strerror}); a second "
                "process training into the same directory would not be refused"
            )
            return
        self.handle = handle

    def release(self) -> None:
        if self.handle is not None:
            os.close(self.handle)  # releases the lock
            self.handle = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _locked(directory: Path) -> bool:
    """Whether another process holds ``directory``'s run lock now."""
    path = directory / LOCK_FILE
    if fcntl is None or not path.is_file():
        return False
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:  # no locks on this file system
        return False
    finally:
        os.close(handle)


def prepare_run_dir(out: Path, overwrite: bool) -> tuple[Path | None, RunLock]:
    """:func:`check_run_dir`, then make ``out`` an empty, writable directory and lock it
    (:class:`RunLock`; the caller releases it when its run ends). A run it replaces is moved
    aside, not deleted, its lock held while it moves: the caller deletes what it returns once
    the new run has a checkpoint, or moves it back (:func:`restore_run_dir`) if the new run
    fails before one.
    """
    check_run_dir(out, overwrite)
    aside, target, old_lock = None, out, None
    try:
        if out.is_dir() and any(out.iterdir()):  # a run, and overwrite
            target = out.resolve()  # the run itself, where out is a link to it
            if Path.cwd().resolve().is_relative_to(target):
                raise CheckpointError(
                    f"out={str(out)!r} holds the current directory; replace it from elsewhere",
                    argument="out",
                )
            old_lock = RunLock(target)  # none may start training in it now
            aside = target.with_name(f".{target.name}.replaced-{secrets.token_hex(4)}")
            target.rename(aside)
        try:
            make_writable_dir(target)
            return aside, RunLock(target)
        except RunLockedError as error:  # another process took the new directory first: theirs
            if aside is not None:
                error.add_note(f"The run it was to replace is kept at {aside}.")
            raise
        except CheckpointError:
            if aside is not None:
                restore_run_dir(out, aside)
            raise
    finally:
        if old_lock is not None:
            old_lock.release()


def make_writable_dir(out: Path) -> None:
    """Create ``out`` (and its parents) if needed, and check that files can be written in it."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}-{secrets.token_hex(4)}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or error
        raise CheckpointError(
            f"cannot write to out={str(out)!r}: {reason}", argument="out"
        ) from None


def restore_run_dir(out: Path, aside: Path) -> None:
    """Put the run :func:`prepare_run_dir` moved aside back in ``out``."""
    target = out.resolve()
    shutil.rmtree(target, ignore_errors=True)
    aside.rename(target)


def _is_run(directory: Path) -> bool:
    """Whether ``directory`` holds a charseq run: a ``latest.json`` naming a checkpoint in it."""
    if not (directory / LATEST_FILE).is_file():
        return False
    try:
        return CheckpointStore(directory).latest() is not None
    except CheckpointError:
        return False


def clear_run_dir(run_dir: Path, *, remove: bool) -> None:
    """Delete what a run that failed before its first checkpoint wrote into ``run_dir`` (the
    directory itself too if ``remove``)."""
    if remove:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for child in run_dir.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def is_training_checkpoint(directory: Path) -> bool:
    """Whether ``directory`` is a checkpoint with a training state (one that resumes)."""
    if not (directory / MANIFEST_FILE).is_file():
        return False
    try:
        return isinstance(read_manifest(directory).get("trainer"), dict)
    except CheckpointError:
        return False  # not a readable checkpoint: write_checkpoint says what it is


def check_latest_of_its_run(path: Path, manifest: Mapping[str, Any]) -> None:
    """Refuse to resume an older checkpoint of a run in that run: the new steps would be
    written beside the later ones, mixing two histories in one directory."""
    latest = CheckpointStore(path.parent).latest()
    if latest is None:
        return
    step, last = manifest.get("step", 0), read_manifest(latest).get("step", 0)
    for where, value in ((path, step), (latest, last)):
        if not is_int(value):
            raise CheckpointError(f"{where / MANIFEST_FILE}: step is {value!r}; expected an int")
    if step < last:
        raise CheckpointError(
            f"{path} is step {step}, older than its run's latest checkpoint ({latest.name}, step "
            f"{last}); resuming it there would mix two histories in {path.parent}. Copy it into "
            "a directory of its own and resume that copy, or resume the run itself"
        )


def recover_interrupted_save(path: str | Path) -> None:
    """Before a resume reads the run ``path`` is (or holds a checkpoint of): put back what a
    save killed between its two renames left moved aside, and delete its leftovers, as the
    run's next save would. Nothing is done where ``path`` is in no run, or while a process
    trains into the run (holding its lock)."""
    path = Path(path)
    run = path if (path / LATEST_FILE).is_file() else path.parent
    if not (run / LATEST_FILE).is_file():
        return
    try:
        with RunLock(run):
            recover_leftovers(run)
    except (RunLockedError, OSError):
        return  # the resume itself says the run is busy, or that it cannot be written
