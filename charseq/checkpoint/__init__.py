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
and the best checkpoints of a run (:class:`CheckpointStore`), which readers read whole while it is
written (:func:`read_checkpoint`). It knows nothing about trainers.

Modules: ``directory`` (one checkpoint directory, written atomically), ``state`` (nested state
and RNGs as tensors + JSON), ``run`` (a run's checkpoints and ``latest.json``, read whole while
written), ``run_dir`` (starting, replacing or resuming a run in a directory, and its lock);
everything public is importable from here.
"""

from __future__ import annotations

from charseq.checkpoint.directory import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_FILE,
    MODEL_FILE,
    TENSOR_SUFFIX,
    CheckpointError,
    copy_checkpoint,
    load_checkpoint,
    read_manifest,
    read_tensors,
    read_weights,
    tensor_names,
    write_checkpoint,
)
from charseq.checkpoint.run import (
    BEST_DIR,
    LATEST_FILE,
    CheckpointStore,
    read_checkpoint,
    resolve_checkpoint,
)
from charseq.checkpoint.run_dir import (
    RunLock,
    RunLockedError,
    check_latest_of_its_run,
    check_run_dir,
    clear_run_dir,
    is_training_checkpoint,
    make_writable_dir,
    prepare_run_dir,
    recover_interrupted_save,
    restore_run_dir,
)
from charseq.checkpoint.state import (
    capture_rng,
    generator_state,
    optimizer_state_from_tensors,
    optimizer_state_to_tensors,
    restore_generator,
    restore_rng,
    state_from_tensors,
    state_to_tensors,
)

__all__ = [
    "BEST_DIR",
    "CheckpointError",
    "CheckpointStore",
    "FORMAT",
    "FORMAT_VERSION",
    "LATEST_FILE",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "TENSOR_SUFFIX",
    "capture_rng",
    "check_latest_of_its_run",
    "check_run_dir",
    "clear_run_dir",
    "copy_checkpoint",
    "generator_state",
    "is_training_checkpoint",
    "load_checkpoint",
    "make_writable_dir",
    "optimizer_state_from_tensors",
    "optimizer_state_to_tensors",
    "prepare_run_dir",
    "read_checkpoint",
    "read_manifest",
    "read_tensors",
    "read_weights",
    "recover_interrupted_save",
    "resolve_checkpoint",
    "restore_generator",
    "restore_rng",
    "restore_run_dir",
    "RunLock",
    "RunLockedError",
    "state_from_tensors",
    "state_to_tensors",
    "tensor_names",
    "write_checkpoint",
]
