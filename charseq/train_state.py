"""A trainer's checkpoint: what it records of the run (:func:`checkpoint_contents`) and how a
trainer is put back from one (:func:`restore_trainer`), for exact resume.

The loop itself is :mod:`charseq.train`; the ``trainer`` table's fields and their checks are
:func:`charseq.training_run.training_state`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from charseq import __version__
from charseq.checkpoint import (
    MANIFEST_FILE,
    CheckpointError,
    capture_rng,
    optimizer_state_from_tensors,
    optimizer_state_to_tensors,
    read_tensors,
    restore_rng,
)
from charseq.checkpoint import state as fields
from charseq.distributed import DistributedError, World, shard_rows
from charseq.training_run import training_state

if TYPE_CHECKING:
    from charseq.model import StackState
    from charseq.train import Trainer


def checkpoint_contents(
    trainer: Trainer,
    whole_hidden: StackState | None = None,
    ranks_rng: dict[str, torch.Tensor] | None = None,
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """The tensors and manifest of a checkpoint of ``trainer``'s run as it stands.

    ``whole_hidden`` is the carried state of the whole batch (:meth:`Trainer.whole_hidden`,
    gathered from every rank); by default the trainer's own. ``ranks_rng`` are the other
    ranks' torch RNG states (:meth:`Trainer.ranks_rng`).

    A distributed run's checkpoint is what one process would write, plus the world size and
    the other ranks' RNG states: the whole batch's carried state and data cursor (every rank's
    cursor is the same), rank 0's optimizer state (every rank's is the same: the same averaged
    gradients) and RNG states, and ranks 1 to N-1's torch RNG states (their dropout masks).
    """
    optimizer_tensors, optimizer_meta = optimizer_state_to_tensors(trainer.optimizer.state_dict())
    rng_tensors, rng_meta = capture_rng()
    rng_tensors |= ranks_rng or {}
    hidden = {}
    carried = trainer.hidden if whole_hidden is None else whole_hidden
    for layer, state in enumerate(carried or []):
        for i, tensor in enumerate(state):
            hidden[f"layer{layer}.{i}"] = tensor.detach()
    tensors = {
        "model": dict(trainer.model.state_dict()),
        "optimizer": optimizer_tensors,
        "rng": rng_tensors,
        "hidden": hidden,
    }
    manifest = {
        **trainer.pipeline.manifest(),
        "corpus": {**trainer.corpus, "bounds": trainer.splits.bounds},
        "metrics": {f"best_{trainer.task.best_metric}": trainer.best},
        "trainer": {
            "step": trainer.step,
            "batches": trainer.batches.state_dict(),
            "has_hidden": trainer.hidden is not None,
            "best_val_bpc": trainer.best,  # the task's best metric (the language model's: BPC)
            "evals_since_best": trainer.evals_since_best,
            "lr_scale": trainer.lr_scale,
            "first_loss": trainer.first_loss,
            "divergences": trainer.divergences,
            "train_seconds": trainer.seconds(),
            "optimizer": optimizer_meta,
            "rng": rng_meta,
            "charseq_version": __version__,
        },
    }
    if trainer.world.distributed:  # one process's checkpoints stay as they were
        manifest["trainer"]["world_size"] = trainer.world.size
    return tensors, manifest


def check_world_size(directory: str | Path, state: dict[str, Any], world: World) -> None:
    """Refuse to resume the checkpoint in ``directory`` (its ``trainer`` table ``state``) on
    another number of processes than wrote it.

    Raises:
        DistributedError: the numbers differ; the message says how many to use.
    """
    saved = state.get("world_size") or 1
    if saved == world.size:
        return
    wrote, have = (f"{n} processes" if n > 1 else "one process" for n in (saved, world.size))
    how = (
        f"torchrun --nproc-per-node {saved}, or charseq train --nproc {saved}"
        if saved > 1
        else "without torchrun"
    )
    raise DistributedError(
        f"{directory} was written by a run on {wrote} and this one has {have}; resume it on "
        f"{wrote} ({how}): resuming on another number of processes is not supported"
    )


def restore_trainer(trainer: Trainer, directory: str | Path, manifest: dict[str, Any]) -> None:
    """Put ``trainer``'s loop back where the checkpoint in ``directory`` left it."""
    state = training_state(directory, manifest)
    check_world_size(directory, state, trainer.world)
    file = Path(directory) / MANIFEST_FILE
    with fields.restoring(file, "trainer.optimizer"):
        trainer.optimizer.load_state_dict(
            optimizer_state_from_tensors(
                read_tensors(directory, "optimizer"),
                state["optimizer"],
                trainer.optimizer.state_dict(),
            )
        )
    with fields.restoring(file, "trainer.batches"):
        trainer.batches.load_state_dict(state["batches"])
    trainer.step = trainer.pipeline.steps_trained = trainer.restored_step = state["step"]
    trainer.best = state["best_val_bpc"]
    trainer.evals_since_best = state["evals_since_best"]
    trainer.lr_scale = state["lr_scale"]
    trainer.first_loss = state["first_loss"]
    trainer.divergences = state["divergences"]
    trainer.train_seconds = state["train_seconds"]
    trainer.hidden = None
    if state["has_hidden"]:
        trainer.hidden = _read_hidden(trainer, Path(directory))
    with fields.restoring(file, "trainer.rng"):
        rng = read_tensors(directory, "rng")
        restore_rng(rng, state["rng"])
        _restore_rank_rng(trainer, rng)


def _restore_rank_rng(trainer: Trainer, rng: dict[str, torch.Tensor]) -> None:
    """Give rank ``r > 0`` of a distributed run its own torch RNG states back."""
    rank = trainer.world.rank
    if rank == 0:
        return
    try:
        torch.set_rng_state(rng[f"torch.rank{rank}"])
        if trainer.device.type == "cuda" and f"cuda.rank{rank}" in rng:
            torch.cuda.set_rng_state(rng[f"cuda.rank{rank}"], trainer.device)
    except (KeyError, RuntimeError) as error:
        raise CheckpointError(
            f"the saved RNG state of rank {rank} is missing or invalid: {error!r}"
        ) from None


def _read_hidden(trainer: Trainer, directory: Path) -> list[tuple[torch.Tensor, ...]]:
    """The carried hidden state a checkpoint holds, checked against the model's, on the
    trainer's device: this rank's rows of it with several processes."""
    train = trainer.spec.train
    hidden = read_tensors(directory, "hidden")
    like = trainer.model.initial_state(train.batch_size, device="meta")
    fields.check_tensors(
        directory / "hidden.safetensors",
        hidden,
        {f"layer{layer}.{i}": t for layer, s in enumerate(like) for i, t in enumerate(s)},
        (torch.float32, torch.bfloat16) if train.precision == "bf16" else (),
    )
    world = trainer.world
    rows = shard_rows(train.batch_size, world.rank, world.size)
    return [
        tuple(hidden[f"layer{layer}.{i}"][rows].to(trainer.device) for i in range(len(s)))
        for layer, s in enumerate(like)
    ]
