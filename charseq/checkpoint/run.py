"""A run's checkpoints: the last K and the best, ``latest.json``, and reading them whole while a
process trains into the run.

The rules for starting, replacing and resuming a run in a directory are in
:mod:`charseq.checkpoint.run_dir`.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from charseq.checkpoint.directory import (
    MANIFEST_FILE,
    CheckpointError,
    copy_checkpoint,
    interrupted_hint,
    kept_aside,
    read_json,
    read_manifest,
    read_tensors,
    recover_leftovers,
    remove_dir,
    tensor_names,
    write_checkpoint,
    write_json,
)

LATEST_FILE = "latest.json"
BEST_DIR = "best"
READ_ATTEMPTS = 10
"""How many times :func:`read_checkpoint` reads a checkpoint that a writer keeps replacing."""
_STEP_DIR = re.compile(r"step-(\d+)")


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
        recover_leftovers(self.run_dir)
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
        write_json(
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
                f"{self.run_dir}{interrupted_hint(path)}"
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
                remove_dir(path)


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
        hint = interrupted_hint(path)
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
    previous = kept_aside(target)
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


_RUN_DIR_NAMES = frozenset(
    {
        "LOCK_FILE",
        "RunLock",
        "RunLockedError",
        "check_latest_of_its_run",
        "check_run_dir",
        "clear_run_dir",
        "is_training_checkpoint",
        "make_writable_dir",
        "prepare_run_dir",
        "recover_interrupted_save",
        "restore_run_dir",
    }
)


def __getattr__(name: str) -> Any:
    """The run-directory names this module held before :mod:`charseq.checkpoint.run_dir` took
    them, still importable from here."""
    if name in _RUN_DIR_NAMES:
        # function-local: run_dir imports this module (the store it checks runs against)
        from charseq.checkpoint import run_dir

        return getattr(run_dir, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
