"""One checkpoint directory: safetensors files and a JSON manifest, written atomically, checked
when read."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
from torch import Tensor, nn

from charseq.checks import is_int
from charseq.errors import CharseqError
from charseq.files import atomic_write

FORMAT = "charseq-checkpoint"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.safetensors"
TENSOR_SUFFIX = ".safetensors"

_RESERVED = ("format", "format_version", "files")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_LEFTOVER = re.compile(r"\.(?P<target>.+)\.(?P<kind>tmp|old|trash)-[a-z0-9_]+")
_CHUNK = 1 << 20


class CheckpointError(CharseqError):
    """A checkpoint is missing, incomplete, corrupt, of an unknown or newer format, or foreign."""


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
        hint = interrupted_hint(directory)
        raise CheckpointError(f"{directory}: no such checkpoint directory{hint}")
    if not path.is_file():
        raise CheckpointError(f"{directory}: not a charseq checkpoint (no {MANIFEST_FILE})")
    manifest = read_json(path, "manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a charseq checkpoint manifest")
    version = manifest.get("format_version")
    if not is_int(version) or version < 1:
        raise CheckpointError(f"{path}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} is newer than this charseq reads "
            f"({FORMAT_VERSION}); upgrade charseq"
        )
    _check_files_entry(path, manifest.get("files"))
    for entry in manifest["files"]:
        refuse_link_out(directory / entry["name"], directory)
    missing = [f["name"] for f in manifest["files"] if not (directory / f["name"]).is_file()]
    if missing:
        raise CheckpointError(
            f"{directory}: truncated checkpoint: missing {', '.join(missing)} "
            f"listed in {MANIFEST_FILE}"
        )
    return manifest


def read_json(path: Path, what: str) -> Any:
    """The JSON value in ``path``, a file of a checkpoint or a run (``what`` names it in errors).

    Whatever the file holds, the only error is a :class:`CheckpointError` naming it: a link that
    leads out of its directory, text that is not JSON, nesting too deep to parse, or a number
    with more digits than Python converts.
    """
    refuse_link_out(path, path.parent)
    try:
        return json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as error:
        raise CheckpointError(
            f"{path}: unreadable {what} (corrupt or truncated): {error}"
        ) from None
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{path}: unreadable {what} (not UTF-8): {error}") from None
    except RecursionError:
        raise CheckpointError(
            f"{path}: unreadable {what}: its JSON is nested too deeply (charseq writes no such "
            "file)"
        ) from None
    except ValueError:  # an integer of more digits than int() converts (sys.int_info)
        raise CheckpointError(
            f"{path}: unreadable {what}: it holds a number of more digits than Python reads "
            "(charseq writes no such file)"
        ) from None


def refuse_link_out(path: Path, root: Path) -> None:
    """Refuse ``path`` if it is a symbolic link leading outside the directory ``root``.

    A checkpoint or run from someone else could otherwise make charseq read any file on this
    machine. Links that stay inside ``root`` are followed.
    """
    if path.is_symlink() and not path.resolve().is_relative_to(root.resolve()):
        raise CheckpointError(
            f"{path} is a symbolic link leading outside {root}; refused: every file of a "
            "checkpoint or run must be inside it"
        )


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
    refuse_link_out(path, directory)
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


def write_json(path: Path, data: Any) -> None:
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


def remove_dir(path: Path) -> None:
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
    recover_leftovers(directory.parent, only=directory.name)
    return Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))


def recover_leftovers(parent: Path, only: str | None = None) -> None:
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


def kept_aside(directory: Path) -> Path | None:
    """The previous version of the checkpoint ``directory`` that a save replacing it moved aside
    (``.<name>.old-*/previous``), if there is one: kept while the save runs, and after a save
    killed between its two renames until the next save puts it back."""
    prefix = f".{directory.name}.old-"
    with contextlib.suppress(OSError):
        for entry in directory.parent.iterdir():
            if entry.name.startswith(prefix) and (entry / "previous" / MANIFEST_FILE).is_file():
                return entry / "previous"
    return None


def interrupted_hint(directory: Path) -> str:
    """A hint when a killed save left ``directory``'s previous version aside."""
    previous = kept_aside(directory)
    if previous is None:
        return ""
    return f" (an interrupted save left its previous version in {previous})"
