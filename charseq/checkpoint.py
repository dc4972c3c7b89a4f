"""Checkpoints: one directory of safetensors files plus ``manifest.json``. Loading runs no code.

A checkpoint directory holds one ``<name>.safetensors`` file per entry of the ``tensors`` mapping
given to :func:`write_checkpoint` (``model``, ``optimizer``, ``state``, ...) and a JSON manifest
with the format, its version, the list of files (with size and SHA-256) and whatever the caller
adds (spec, tokenizer state, plugin versions, step, metrics). Tensors are moved to the CPU when
saved and always load on the CPU, whatever device trained them. Nothing is ever unpickled.

Writes are atomic: a checkpoint is written and fsynced under a temporary sibling name
(``.<name>.tmp-*``), then renamed into place; an existing checkpoint is moved aside
(``.<name>.old-*``) and deleted only after the new one is in place. A crash or a full disk during a
save leaves the previous checkpoint loadable; the next save in the same place cleans up (or, if it
was interrupted between the two renames, restores) what a killed process left behind.

Exact resume needs more than weights, so this module also turns nested state (an optimizer's or a
scheduler's ``state_dict``, the data cursor, the carried hidden state) into tensors plus plain JSON
(:func:`state_to_tensors`), captures every global RNG (:func:`capture_rng`), and keeps the last K
and the best checkpoints of a run (:class:`CheckpointStore`). It knows nothing about trainers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import re
import secrets
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import Tensor, nn

from charseq.errors import CharseqError
from charseq.files import atomic_write

FORMAT = "charseq-checkpoint"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.safetensors"
TENSOR_SUFFIX = ".safetensors"
LATEST_FILE = "latest.json"
BEST_DIR = "best"

_RESERVED = ("format", "format_version", "files")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_STEP_DIR = re.compile(r"step-(\d+)")
_LEFTOVER = re.compile(r"\.(?P<target>.+)\.(?P<kind>tmp|old|trash)-[a-z0-9_]+")
_CHUNK = 1 << 20


class CheckpointError(CharseqError):
    """A checkpoint is missing, incomplete, corrupt, of an unknown or newer format, or foreign."""


# -- one checkpoint directory -----------------------------------------------------------------


def write_checkpoint(
    directory: str | Path,
    tensors: Mapping[str, Mapping[str, Tensor]] | nn.Module,
    manifest: Mapping[str, Any],
) -> Path:
    """Write a checkpoint to ``directory`` atomically and return its path.

    ``tensors`` maps a file name (``"model"``, ``"optimizer"``, ...) to a flat ``{key: tensor}``
    dict, written as ``<name>.safetensors``; an ``nn.Module`` is shorthand for
    ``{"model": module.state_dict()}``. Tensors are detached and moved to the CPU (a CUDA
    checkpoint loads anywhere); tensors that share memory (tied weights) are stored as copies.
    ``manifest`` must be JSON-serialisable; the keys ``format``, ``format_version`` and
    ``files`` are set here.

    An existing ``directory`` is replaced only if it is a checkpoint, and only once the new one is
    complete and fsynced. Any error leaves ``directory`` as it was and no temporary behind.
    """
    directory = Path(directory)
    if isinstance(tensors, nn.Module):
        tensors = {"model": tensors.state_dict()}
    prepared = {name: _cpu_tensors(name, entries) for name, entries in tensors.items()}
    user = {k: v for k, v in manifest.items() if k not in _RESERVED}
    json.dumps(user)  # fail on unserialisable values before touching the disk
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_for(directory)
    try:
        files = []
        for name, entries in prepared.items():
            path = staging / f"{name}{TENSOR_SUFFIX}"
            safetensors.torch.save_file(entries, path, metadata={"format": FORMAT})
            size, digest = _fsync_and_hash(path)
            files.append({"name": path.name, "bytes": size, "sha256": digest})
        full = {"format": FORMAT, "format_version": FORMAT_VERSION, "files": files, **user}
        _write_synced(staging / MANIFEST_FILE, json.dumps(full, indent=2) + "\n")
        _fsync_dir(staging)
        _swap_into_place(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of the checkpoint in ``directory``, checked for format, version and files.

    Raises :class:`CheckpointError` if the directory is missing or foreign, the manifest is
    unreadable or from a newer format version, or a file it lists is missing (truncated).
    """
    directory = Path(directory)
    path = directory / MANIFEST_FILE
    if not directory.is_dir():
        hint = _interrupted_hint(directory)
        raise CheckpointError(f"{directory}: no such checkpoint directory{hint}")
    if not path.is_file():
        raise CheckpointError(f"{directory}: not a charseq checkpoint (no {MANIFEST_FILE})")
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(
            f"{path}: unreadable manifest (corrupt or truncated): {error}"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a charseq checkpoint manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} is newer than this charseq reads "
            f"({FORMAT_VERSION}); upgrade charseq"
        )
    _check_files_entry(path, manifest.get("files"))
    missing = [f["name"] for f in manifest["files"] if not (directory / f["name"]).is_file()]
    if missing:
        raise CheckpointError(
            f"{directory}: truncated checkpoint: missing {', '.join(missing)} "
            f"listed in {MANIFEST_FILE}"
        )
    return manifest


def tensor_names(manifest: Mapping[str, Any]) -> list[str]:
    """The names of a checkpoint's tensor files, e.g. ``["model", "optimizer"]``."""
    return [f["name"].removesuffix(TENSOR_SUFFIX) for f in manifest["files"]]


def read_tensors(
    directory: str | Path, name: str, *, manifest: Mapping[str, Any] | None = None
) -> dict[str, Tensor]:
    """The tensors of ``<name>.safetensors`` in the checkpoint ``directory``, on the CPU.

    The file's size and SHA-256 are checked against the manifest (read unless given); a
    mismatch or an unparsable file raises :class:`CheckpointError`. Uses safetensors only.
    """
    directory = Path(directory)
    manifest = read_manifest(directory) if manifest is None else manifest
    what = "weights" if name == "model" else f"{name!r} tensors"
    entry = next((f for f in manifest["files"] if f["name"] == f"{name}{TENSOR_SUFFIX}"), None)
    if entry is None:
        have = ", ".join(tensor_names(manifest)) or "none"
        raise CheckpointError(f"{directory}: checkpoint has no {what} (it has: {have})")
    path = directory / entry["name"]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{directory}: truncated checkpoint: missing {path.name}") from None
    if len(data) != entry["bytes"]:
        raise CheckpointError(
            f"{path}: unreadable {what}: {len(data)} bytes where the manifest says "
            f"{entry['bytes']} (truncated or corrupt)"
        )
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise CheckpointError(f"{path}: unreadable {what}: SHA-256 mismatch (corrupt file)")
    try:
        return safetensors.torch.load(data)
    except Exception as error:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{path}: unreadable {what}: {error}") from None


def read_weights(directory: str | Path) -> dict[str, Tensor]:
    """The model's tensors (``model.safetensors``) of the checkpoint in ``directory``, on CPU."""
    return read_tensors(directory, "model")


def load_checkpoint(directory: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, Tensor]]]:
    """The manifest and every tensor file of a checkpoint, fully read and verified, on CPU."""
    manifest = read_manifest(directory)
    tensors = {
        name: read_tensors(directory, name, manifest=manifest) for name in tensor_names(manifest)
    }
    return manifest, tensors


def copy_checkpoint(source: str | Path, directory: str | Path) -> Path:
    """Copy the checkpoint ``source`` to ``directory`` atomically (hard links where possible).

    Checkpoint files are never modified in place, so a hard-linked copy is independent: deleting
    or replacing ``source`` later leaves ``directory`` intact.
    """
    source, directory = Path(source), Path(directory)
    manifest = read_manifest(source)
    staging = _staging_for(directory)
    try:
        for name in [f["name"] for f in manifest["files"]] + [MANIFEST_FILE]:
            try:
                os.link(source / name, staging / name)
            except OSError:
                shutil.copyfile(source / name, staging / name)
                _fsync_and_hash(staging / name)
        _fsync_dir(staging)
        _swap_into_place(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


# -- nested state as tensors + JSON -----------------------------------------------------------


def state_to_tensors(state: Any) -> tuple[dict[str, Tensor], Any]:
    """Split nested state into ``(tensors, meta)``: a flat tensor dict and plain-JSON ``meta``.

    ``state`` may nest dicts (any keys of the types below), lists and tuples of tensors,
    ``None``, bools, ints, floats (NaN and infinities included) and strings; this covers
    ``state_dict()`` of torch optimizers and LR schedulers, data cursors and hidden states.
    :func:`state_from_tensors` rebuilds it exactly: types, dtypes, tuples and key types.
    Tensors are named after their path (``state.0.exp_avg``) and are the state's own, not
    copies: write them before the state changes. Other types raise ``TypeError``; mappings come
    back as plain dicts.
    """
    tensors: dict[str, Tensor] = {}
    return tensors, _encode(state, "", tensors)


def state_from_tensors(tensors: Mapping[str, Tensor], meta: Any) -> Any:
    """Rebuild the state split by :func:`state_to_tensors`; raises CheckpointError on a mismatch."""
    try:
        return _decode(meta, tensors)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"the saved state is malformed: {error}") from None


def optimizer_state_to_tensors(state_dict: Mapping[str, Any]) -> tuple[dict[str, Tensor], Any]:
    """``(tensors, meta)`` for an optimizer's ``state_dict()``; see :func:`state_to_tensors`."""
    if not {"state", "param_groups"} <= set(state_dict):
        raise TypeError("not an optimizer state_dict: it needs 'state' and 'param_groups'")
    return state_to_tensors(dict(state_dict))


def optimizer_state_from_tensors(tensors: Mapping[str, Tensor], meta: Any) -> dict[str, Any]:
    """The optimizer ``state_dict`` saved by :func:`optimizer_state_to_tensors`, exactly."""
    state = state_from_tensors(tensors, meta)
    if not isinstance(state, dict) or not {"state", "param_groups"} <= set(state):
        raise CheckpointError("the saved optimizer state is not an optimizer state_dict")
    return state


def _encode(value: Any, path: str, tensors: dict[str, Tensor]) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, Tensor):
        key, n = path or "tensor", 1
        while key in tensors:  # keys that differ only in type (0 and "0") share a path
            key, n = f"{path or 'tensor'}#{n}", n + 1
        tensors[key] = value
        return {"__tensor__": key}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, _join(path, i), tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, _join(path, i), tensors) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, _join(path, k), tensors) for k, v in value.items()}
        return {
            "__items__": [
                [_encode(k, _join(path, "key"), tensors), _encode(v, _join(path, k), tensors)]
                for k, v in value.items()
            ]
        }
    where = path or "the top level"
    raise TypeError(f"cannot store a {type(value).__name__} at {where} in a checkpoint")


def _decode(meta: Any, tensors: Mapping[str, Tensor]) -> Any:
    if isinstance(meta, list):
        return [_decode(v, tensors) for v in meta]
    if not isinstance(meta, dict):
        return meta
    if len(meta) == 1:
        [(tag, body)] = meta.items()
        if tag == "__tensor__":
            if body not in tensors:
                raise CheckpointError(f"saved state refers to a missing tensor {body!r}")
            return tensors[body]
        if tag == "__tuple__":
            return tuple(_decode(v, tensors) for v in body)
        if tag == "__items__":
            return {_decode(k, tensors): _decode(v, tensors) for k, v in body}
        if tag == "__float__":
            return float(body)
    return {k: _decode(v, tensors) for k, v in meta.items()}


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


# -- random number generators -----------------------------------------------------------------


def capture_rng() -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The state of every global RNG as ``(tensors, meta)``: Python ``random``, numpy's global
    generator, torch's CPU generator and, if CUDA is initialised, every CUDA device's generator.

    ``meta`` is plain JSON. CUDA is not initialised here: a process that never used CUDA has no
    CUDA RNG state worth keeping.
    """
    version, internal, gauss_next = random.getstate()
    algorithm, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    tensors = {
        "python": torch.tensor(internal, dtype=torch.int64),
        "numpy": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "torch": torch.get_rng_state(),
    }
    meta: dict[str, Any] = {
        "python": {"version": version, "gauss_next": gauss_next},
        "numpy": {
            "algorithm": algorithm,
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "cuda_devices": 0,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states = torch.cuda.get_rng_state_all()
        tensors.update({f"cuda.{i}": state.cpu() for i, state in enumerate(states)})
        meta["cuda_devices"] = len(states)
    return tensors, meta


def restore_rng(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> None:
    """Restore the RNG states captured by :func:`capture_rng`.

    CUDA states are restored for the devices that exist here; states of devices this machine
    lacks (a GPU checkpoint resumed on CPU) are ignored.
    """
    try:
        python, numpy_meta = meta["python"], meta["numpy"]
        internal = tuple(int(x) for x in tensors["python"].tolist())
        random.setstate((python["version"], internal, python["gauss_next"]))
        np.random.set_state(
            (
                numpy_meta["algorithm"],
                tensors["numpy"].numpy().astype(np.uint32),
                numpy_meta["pos"],
                numpy_meta["has_gauss"],
                numpy_meta["cached_gaussian"],
            )
        )
        torch.set_rng_state(tensors["torch"])
        saved = int(meta.get("cuda_devices", 0))
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"the saved RNG state is incomplete or invalid: {error!r}") from None
    if saved and torch.cuda.is_available():
        for i in range(min(saved, torch.cuda.device_count())):
            torch.cuda.set_rng_state(tensors[f"cuda.{i}"], i)


def generator_state(generator: torch.Generator) -> Tensor:
    """The state of a ``torch.Generator`` (CPU or CUDA) as a CPU uint8 tensor."""
    return generator.get_state().cpu()


def restore_generator(generator: torch.Generator, state: Tensor) -> torch.Generator:
    """Set ``generator`` to a state from :func:`generator_state`; returns it."""
    generator.set_state(state.to("cpu", torch.uint8))
    return generator


# -- a run directory: the last K checkpoints and the best ------------------------------------


class CheckpointStore:
    """The checkpoints of one run: ``step-XXXXXXXX/`` directories, ``best/`` and ``latest.json``.

    :meth:`save` writes ``run_dir/step-{step:08d}`` atomically, then ``latest.json``
    (``{"latest": name, "best": name, "best_metric": x}``, replaced atomically), then refreshes
    ``best/`` (an independent copy of the best step directory), then prunes step directories
    beyond the ``keep_last`` highest steps, never deleting the latest or the best.
    ``latest.json`` is the source of truth: a process killed at any point leaves it naming
    complete checkpoints. One process writes a run directory at a time; any number may read.
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
                f"{self.run_dir / LATEST_FILE} names {name}, which is missing from {self.run_dir}"
            )
        return path

    def _index(self) -> dict[str, Any]:
        path = self.run_dir / LATEST_FILE
        if not path.is_file():
            return {}
        try:
            index = json.loads(path.read_text("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CheckpointError(f"{path}: unreadable: {error}") from None
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
    if not _is_run(out):
        raise CheckpointError(
            f"{argument} {out} is not empty and is not a charseq run; choose a new or empty "
            "directory (nothing else is ever replaced)"
        )
    if not overwrite:
        raise CheckpointError(
            f"{argument} {out} already holds a run; continue it with {resume}, replace it "
            f"with {replace}, or choose another {argument}"
        )


def prepare_run_dir(
    out: Path, overwrite: bool, *, argument: str = "out", **words: str
) -> Path | None:
    """:func:`check_run_dir`, then make ``out`` an empty, writable directory. A run it replaces
    is moved aside, not deleted: the caller deletes what it returns once the new run has a
    checkpoint, or moves it back (:func:`restore_run_dir`) if the new run fails before one.
    """
    check_run_dir(out, overwrite, argument=argument, **words)
    aside, target = None, out
    if out.is_dir() and any(out.iterdir()):  # a run, and overwrite
        target = out.resolve()  # the run itself, where out is a link to it
        if Path.cwd().resolve().is_relative_to(target):
            raise CheckpointError(
                f"{argument} {out} holds the current directory; replace it from elsewhere"
            )
        aside = target.with_name(f".{target.name}.replaced-{secrets.token_hex(4)}")
        target.rename(aside)
    try:
        make_writable_dir(target, argument=argument)
    except CheckpointError:
        if aside is not None:
            restore_run_dir(out, aside)
        raise
    return aside


def make_writable_dir(out: Path, *, argument: str = "out") -> None:
    """Create ``out`` (and its parents) if needed, and check that files can be written in it."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
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
    if step < last:
        raise CheckpointError(
            f"{path} is step {step}, older than its run's latest checkpoint ({latest.name}, step "
            f"{last}); resuming it there would mix two histories in {path.parent}. Copy it into "
            "a directory of its own and resume that copy, or resume the run itself"
        )


# -- atomic file-system helpers ---------------------------------------------------------------


def _cpu_tensors(name: str, entries: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """CPU, contiguous, detached copies safetensors accepts (no two sharing memory)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name == "manifest":
        raise ValueError(f"invalid checkpoint file name {name!r}")
    out, seen = {}, set()
    for key, tensor in entries.items():
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{name}[{key!r}] is a {type(tensor).__name__}, not a tensor")
        tensor = tensor.detach().to("cpu").contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        if pointer in seen:
            tensor = tensor.clone()
        elif pointer:
            seen.add(pointer)
        out[key] = tensor
    return out


def _check_files_entry(path: Path, files: Any) -> None:
    ok = isinstance(files, list) and all(
        isinstance(f, dict)
        and isinstance(f.get("name"), str)
        and _NAME.fullmatch(f["name"])
        and f["name"].endswith(TENSOR_SUFFIX)
        and isinstance(f.get("bytes"), int)
        and isinstance(f.get("sha256"), str)
        for f in files
    )
    if not ok:
        raise CheckpointError(f"{path}: malformed manifest: 'files' is missing or invalid")


def _fsync_and_hash(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
        os.fsync(file.fileno())
    return size, digest.hexdigest()


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


def _write_json(path: Path, data: Any) -> None:
    """Replace the JSON file ``path`` atomically: temporary file, fsync, rename, fsync dir."""
    with atomic_write(path) as file:
        file.write((json.dumps(data, indent=2) + "\n").encode("utf-8"))
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    if os.name == "nt":  # Windows cannot open directories; its renames are durable enough
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_into_place(staging: Path, directory: Path) -> None:
    """Rename ``staging`` to ``directory``; an existing ``directory`` is replaced only after."""
    if not directory.exists():
        os.replace(staging, directory)
        _fsync_dir(directory.parent)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
    try:
        os.replace(directory, old / "previous")
    except BaseException:
        shutil.rmtree(old, ignore_errors=True)
        raise
    try:
        os.replace(staging, directory)
    except BaseException:
        os.replace(old / "previous", directory)
        shutil.rmtree(old, ignore_errors=True)
        raise
    _fsync_dir(directory.parent)
    shutil.rmtree(old, ignore_errors=True)


def _remove_dir(path: Path) -> None:
    """Delete ``path``: renamed aside first, so a crash never leaves a half-deleted checkpoint."""
    trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.trash-", dir=path.parent))
    try:
        os.replace(path, trash / "removed")
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def _staging_for(directory: Path) -> Path:
    """A fresh temporary sibling to write ``directory``'s next version in, after refusing a
    ``directory`` that is not a checkpoint and recovering what an interrupted save left."""
    if directory.exists() and not (directory / MANIFEST_FILE).is_file():
        raise CheckpointError(
            f"{directory} exists and is not a charseq checkpoint; refusing to overwrite it"
        )
    _recover_leftovers(directory.parent, only=directory.name)
    return Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))


def _recover_leftovers(parent: Path, only: str | None = None) -> None:
    """Clean up after a killed save in ``parent``: delete staging and trash, and put back a
    checkpoint left aside (``.<name>.old-*/previous``) if the new one never took its place."""
    if not parent.is_dir():
        return
    for entry in parent.iterdir():
        match = _LEFTOVER.fullmatch(entry.name)
        if not match or (only is not None and match["target"] != only):
            continue
        previous, target = entry / "previous", parent / match["target"]
        if match["kind"] == "old" and previous.is_dir() and not target.exists():
            os.replace(previous, target)
            _fsync_dir(parent)
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()


def _interrupted_hint(directory: Path) -> str:
    """A hint when a killed save left ``directory``'s previous version aside."""
    with contextlib.suppress(OSError):
        for entry in directory.parent.glob(f".{directory.name}.old-*"):
            if (entry / "previous" / MANIFEST_FILE).is_file():
                return f" (an interrupted save left its previous version in {entry / 'previous'})"
    return ""
