"""A run directory: the last K checkpoints and the best, ``latest.json``, and the rules for
starting, replacing and resuming a run in it without losing one already there."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import secrets
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

try:
    import fcntl
except ImportError:  # Windows: runs are not locked
    fcntl = None  # type: ignore[assignment]

from charseq.checkpoint.directory import (
    MANIFEST_FILE,
    CheckpointError,
    _interrupted_hint,
    _kept_aside,
    _recover_leftovers,
    _remove_dir,
    _write_json,
    copy_checkpoint,
    read_json,
    read_manifest,
    read_tensors,
    tensor_names,
    write_checkpoint,
)
from charseq.errors import warn

LATEST_FILE = "latest.json"
BEST_DIR = "best"
LOCK_FILE = ".charseq.lock"
READ_ATTEMPTS = 10
"""How many times :func:`read_checkpoint` reads a checkpoint that a writer keeps replacing."""
_STEP_DIR = re.compile(r"step-(\d+)")
_EARLY = re.compile(
    r"cache|metrics\.jsonl|\.charseq\.lock|\.write-test-\w+|\..+\.(?:tmp|old|trash)-\w+"
)
"""What a run writes into its directory before its first checkpoint (the lock first of all)."""
_CHECKPOINTS = re.compile(r"step-\d+|best|latest\.json")
"""What its checkpoints add; anything else in a run directory is the user's."""
_CACHED = re.compile(r"\.?[0-9a-f]{32}\.(?:ids|json)(?:\.tmp-\w+)?|\.stdin-\w+\.tmp")
"""The files of a run's corpus cache (and their temporary names)."""


class CheckpointStore:
    """The checkpoints of one run: ``step-XXXXXXXX/`` directories, ``best/`` and ``latest.json``.

    :meth:`save` writes ``run_dir/step-{step:08d}`` atomically, then ``latest.json``
    (``{"latest": name, "best": name, "best_metric": x}``, replaced atomically), then refreshes
    ``best/`` (an independent copy of the best step directory), then prunes step directories
    beyond the ``keep_last`` highest steps, never deleting the latest or the best.
    ``latest.json`` is the source of truth: a process killed at any point leaves it naming
    complete checkpoints. One process writes a run directory at a time; any number may read it
    with :func:`read_checkpoint`, which copes with the writer replacing and pruning directories.
    """

    def __init__(self, run_dir: str | Path, keep_last: int = 3) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be at least 1, got {keep_last}")
        self.run_dir = Path(run_dir)
        self.keep_last = keep_last

    def save(
        self,
        step: int,
        tensors: Mapping[str, Mapping[str, Tensor]] | nn.Module,
        manifest: Mapping[str, Any],
        metric: float | None = None,
        lower_is_better: bool = True,
    ) -> Path:
        """Write the checkpoint of ``step``; ``metric`` (e.g. validation loss) picks the best."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        _recover_leftovers(self.run_dir)
        name = f"step-{step:08d}"
        path = write_checkpoint(self.run_dir / name, tensors, manifest)
        index = self._index()
        best, best_metric = index.get("best"), index.get("best_metric")
        if best is not None and not (self.run_dir / best).is_dir():  # deleted by hand
            best, best_metric = None, None
        if metric is not None and not math.isnan(metric):
            previous = best_metric if best is not None and best != name else None
            if previous is None or (metric < previous if lower_is_better else metric > previous):
                best, best_metric = name, float(metric)
        elif best == name:  # this step's checkpoint was rewritten without a metric
            best, best_metric = None, None
        _write_json(
            self.run_dir / LATEST_FILE,
            {"latest": name, "best": best, "best_metric": best_metric},
        )
        self._refresh_best(best)
        self._prune(keep={name, best})
        return path

    def latest(self) -> Path | None:
        """The latest checkpoint (as named by ``latest.json``), or None if there is none.

        Without ``latest.json`` (a run killed during its first save) the highest complete step
        directory is the latest.
        """
        index = self._index()
        if index:
            return self._named(index["latest"])
        for path in reversed(self.checkpoints()):
            with contextlib.suppress(CheckpointError):
                read_manifest(path)
                return path
        return None

    def best(self) -> Path | None:
        """The step directory with the best metric, or None if no save had a metric."""
        name = self._index().get("best")
        return None if name is None else self._named(name)

    def best_metric(self) -> float | None:
        """The metric of :meth:`best`, or None."""
        return self._index().get("best_metric")

    def checkpoints(self) -> list[Path]:
        """The step directories of this run, lowest step first."""
        if not self.run_dir.is_dir():
            return []
        found = [p for p in self.run_dir.iterdir() if p.is_dir() and _STEP_DIR.fullmatch(p.name)]
        return sorted(found, key=lambda p: int(p.name[5:]))

    def _named(self, name: str) -> Path:
        path = self.run_dir / name
        if not path.is_dir():
            raise CheckpointError(
                f"{self.run_dir / LATEST_FILE} names {name}, which is missing from "
                f"{self.run_dir}{_interrupted_hint(path)}"
            )
        return path

    def _index(self) -> dict[str, Any]:
        path = self.run_dir / LATEST_FILE
        if not path.is_file():
            return {}
        index = read_json(path, LATEST_FILE)
        names = [index.get("latest"), index.get("best")] if isinstance(index, dict) else [None]
        if not isinstance(names[0], str) or not all(
            n is None or (isinstance(n, str) and _STEP_DIR.fullmatch(n)) for n in names
        ):
            raise CheckpointError(f"{path}: not a charseq {LATEST_FILE}")
        return index

    def _refresh_best(self, best: str | None) -> None:
        target = self.run_dir / BEST_DIR
        if best is None:
            return
        source = self.run_dir / best
        with contextlib.suppress(OSError):
            if (target / MANIFEST_FILE).read_bytes() == (source / MANIFEST_FILE).read_bytes():
                return
        copy_checkpoint(source, target)

    def _prune(self, keep: set[str | None]) -> None:
        steps = self.checkpoints()
        keep = keep | {p.name for p in steps[-self.keep_last :]}
        for path in steps:
            if path.name not in keep:
                _remove_dir(path)


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint directory meant by ``path``: a checkpoint directory, or a run directory
    (its latest checkpoint). The checkpoint's manifest is checked; errors say what ``path`` is.
    """
    if not isinstance(path, str | os.PathLike):
        raise CheckpointError(
            f"a checkpoint is named by a path (str or Path), got {type(path).__name__} {path!r}"
        )
    path = Path(path)
    if path.is_file() and path.name in (MANIFEST_FILE, LATEST_FILE):
        path = path.parent
    if not path.exists():
        hint = _interrupted_hint(path)
        raise CheckpointError(f"{path}: no such checkpoint or run directory{hint}")
    if not path.is_dir():
        raise CheckpointError(f"{path} is a file; give a checkpoint directory or a run directory")
    if (path / MANIFEST_FILE).is_file():
        read_manifest(path)
        return path
    store = CheckpointStore(path)
    if (path / LATEST_FILE).is_file() or store.checkpoints():
        latest = store.latest()
        if latest is None:
            raise CheckpointError(f"{path}: run directory has no complete checkpoint yet")
        read_manifest(latest)
        return latest
    raise CheckpointError(
        f"{path}: neither a checkpoint (no {MANIFEST_FILE}) nor a run directory "
        f"(no {LATEST_FILE}, no step-* checkpoints)"
    )


def read_checkpoint(
    path: str | Path, names: Sequence[str] | None = None
) -> tuple[Path, dict[str, Any], dict[str, dict[str, Tensor]]]:
    """Resolve ``path`` to one checkpoint and read its manifest and tensor files, consistently,
    even while a process trains into the run.

    ``path`` is a checkpoint directory (``RUN/best``, ``RUN/step-XXXXXXXX``) or a run directory
    (its latest checkpoint, as :func:`resolve_checkpoint` says). A training process replaces
    ``best/`` and prunes step directories as it saves; a read that fails while what ``path``
    resolves to changes under it (``latest.json``, the directory or its manifest) is started
    again, up to :data:`READ_ATTEMPTS` times, so a file is only called corrupt or missing when
    it is so in a checkpoint that stood still. While a save is replacing ``best/`` (or a
    killed save left it moved aside) the reader takes the step checkpoint ``latest.json`` names
    as the best, or else the previous version the save kept aside.

    Args:
        path: a checkpoint or run directory.
        names: the tensor files to read (``"model"``, ``"optimizer"``, ...); default: all.

    Returns:
        The checkpoint directory read, its manifest, and ``{name: {key: tensor}}`` (on the CPU).
    """
    if not isinstance(path, str | os.PathLike):
        resolve_checkpoint(path)  # refuses it, saying how a checkpoint is named
    path = Path(path)
    last: Exception | None = None
    for attempt in range(READ_ATTEMPTS):
        before, directory, seen = _fingerprint(path), None, None
        try:
            directory = _resolve_for_reading(path)
            seen = _state(directory)
            manifest = read_manifest(directory)
            wanted = tensor_names(manifest) if names is None else names
            tensors = {n: read_tensors(directory, n, manifest=manifest) for n in wanted}
            return directory, manifest, tensors
        except (CheckpointError, OSError) as error:
            moved = _fingerprint(path) != before
            if not moved and (directory is None or _state(directory) == seen):
                raise  # nothing changed under the reader: the error is the checkpoint's own
            last = error
        time.sleep(0.002 * (attempt + 1))  # let the writer finish the save it is in
    raise CheckpointError(
        f"{path}: changed {READ_ATTEMPTS} times while being read (is a run being written there "
        f"very often?); try again. The last attempt said: {last}"
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
            _recover_leftovers(run)
    except (RunLockedError, OSError):
        return  # the resume itself says the run is busy, or that it cannot be written


def _resolve_for_reading(path: Path) -> Path:
    """:func:`resolve_checkpoint`, except that a checkpoint directory a save is replacing (or a
    killed save left moved aside) has a stand-in: for ``RUN/best`` the step checkpoint
    ``latest.json`` names as the best, else the previous version kept aside."""
    target = path
    if path.is_dir() and not (path / MANIFEST_FILE).is_file() and (path / LATEST_FILE).is_file():
        name = CheckpointStore(path)._index().get("latest")
        target = path / name if isinstance(name, str) else path
    if target.exists() or target.is_symlink():
        return resolve_checkpoint(path)
    if target.name == BEST_DIR:
        with contextlib.suppress(CheckpointError):
            best = CheckpointStore(target.parent).best()
            if best is not None:
                return best
    previous = _kept_aside(target)
    return resolve_checkpoint(path if previous is None else previous)


def _fingerprint(path: Path) -> tuple[Any, ...]:
    """What a writer changes when it replaces or prunes what ``path`` resolves to: the
    ``latest.json`` of ``path`` and of its parent, and ``path`` itself (see :func:`_state`)."""
    return _bytes(path / LATEST_FILE), _bytes(path.parent / LATEST_FILE), _state(path)


def _state(directory: Path) -> tuple[Any, ...]:
    """A checkpoint directory's identity (device, inode) and its manifest's bytes (None where
    missing): a directory replaced, removed or rewritten changes one of them."""
    try:
        status = os.stat(directory)
        identity: tuple[int, int] | None = (status.st_dev, status.st_ino)
    except OSError:
        identity = None
    return identity, _bytes(directory / MANIFEST_FILE)


def _bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def check_run_dir(
    out: Path,
    overwrite: bool,
    *,
    argument: str = "out",
    resume: str = "Pipeline.resume",
    replace: str = "overwrite=True",
) -> None:
    """Refuse ``out`` for a new run unless it is new or empty, or (with ``overwrite``) a charseq
    run; changes nothing. So no run is ever mixed into another, or anything else replaced.

    ``argument``, ``resume`` and ``replace`` name the ways out in the caller's terms (the
    command line's ``--out``, ``--resume``, ``--overwrite``).
    """
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{argument} {out} is a file, not a directory")
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
            f"{argument} {out} is not empty and is not a charseq run; choose a new or empty "
            "directory (nothing else is ever replaced)"
        )
    if foreign:
        raise CheckpointError(
            f"{argument} {out} holds a run and also files that are not charseq's "
            f"({_listed(foreign)}); {replace} replaces a run and nothing else: move them out "
            f"first, or choose another {argument}"
        )
    if _locked(out):
        raise RunLockedError(_locked_message(out, argument))
    if not overwrite:
        if not run:  # only what charseq writes, and no checkpoint: a run stopped early
            raise CheckpointError(
                f"{argument} {out} holds what a run left before its first checkpoint "
                f"({_listed(sorted(c.name for c in out.iterdir()))}); replace it with "
                f"{replace}, or choose another {argument}"
            )
        raise CheckpointError(
            f"{argument} {out} already holds a run; continue it with {resume}, replace it "
            f"with {replace}, or choose another {argument}"
        )


def _listed(names: list[str]) -> str:
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


class RunLockedError(CheckpointError):
    """Another process is training into the run directory now."""


def _locked_message(run_dir: Path, argument: str, *, resuming: bool = False) -> str:
    """Why ``run_dir`` is refused, in the caller's terms: a new run may choose another
    ``argument`` (``out``, the command line's ``--out``); a resume has only the run it names."""
    if resuming:
        return (
            f"another process is training into {run_dir} now; resume it once that process has "
            "finished (one process trains a run at a time)"
        )
    return (
        f"another process is training into {argument} {run_dir} now; wait for it to finish, "
        f"or choose another {argument}"
    )


_NO_LOCKS = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}
"""``flock`` errors of a file system without locks (some network and FUSE mounts)."""


class RunLock:
    """An exclusive advisory lock (``flock``) on a run directory's ``.charseq.lock``, held by the
    process training into it until :meth:`release`, so that a second one (a new run, an
    ``overwrite``, a resume) is refused with :class:`RunLockedError` instead of mixing its
    checkpoints into the first's. Where there are no such locks (Windows, a file system without
    them: then with a warning), nothing is locked. ``argument`` names the caller's choice of
    directory in the refusal; ``resuming``: the caller continues this run (it has no other).
    """

    def __init__(self, run_dir: Path, *, argument: str = "out", resuming: bool = False) -> None:
        self.handle: int | None = None
        if fcntl is None:
            return
        handle = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise RunLockedError(_locked_message(run_dir, argument, resuming=resuming)) from None
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


def prepare_run_dir(
    out: Path, overwrite: bool, *, argument: str = "out", **words: str
) -> tuple[Path | None, RunLock]:
    """:func:`check_run_dir`, then make ``out`` an empty, writable directory and lock it
    (:class:`RunLock`; the caller releases it when its run ends). A run it replaces is moved
    aside, not deleted, its lock held while it moves: the caller deletes what it returns once
    the new run has a checkpoint, or moves it back (:func:`restore_run_dir`) if the new run
    fails before one.
    """
    check_run_dir(out, overwrite, argument=argument, **words)
    aside, target, old_lock = None, out, None
    try:
        if out.is_dir() and any(out.iterdir()):  # a run, and overwrite
            target = out.resolve()  # the run itself, where out is a link to it
            if Path.cwd().resolve().is_relative_to(target):
                raise CheckpointError(
                    f"{argument} {out} holds the current directory; replace it from elsewhere"
                )
            old_lock = RunLock(target, argument=argument)  # none may start training in it now
            aside = target.with_name(f".{target.name}.replaced-{secrets.token_hex(4)}")
            target.rename(aside)
        try:
            make_writable_dir(target, argument=argument)
            return aside, RunLock(target, argument=argument)
        except RunLockedError as error:  # another process took the new directory first: theirs
            if aside is not None:
                error.args = (f"{error}; the run it was to replace is kept at {aside}",)
            raise
        except CheckpointError:
            if aside is not None:
                restore_run_dir(out, aside)
            raise
    finally:
        if old_lock is not None:
            old_lock.release()


def make_writable_dir(out: Path, *, argument: str = "out") -> None:
    """Create ``out`` (and its parents) if needed, and check that files can be written in it."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}-{secrets.token_hex(4)}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or error
        raise CheckpointError(f"cannot write to {argument} {out}: {reason}") from None


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
        if isinstance(value, bool) or not isinstance(value, int):
            raise CheckpointError(f"{where / MANIFEST_FILE}: step is {value!r}; expected an int")
    if step < last:
        raise CheckpointError(
            f"{path} is step {step}, older than its run's latest checkpoint ({latest.name}, step "
            f"{last}); resuming it there would mix two histories in {path.parent}. Copy it into "
            "a directory of its own and resume that copy, or resume the run itself"
        )
