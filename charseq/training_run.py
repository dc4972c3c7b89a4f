"""A training run's terms and outcome, apart from the loop that runs it (:mod:`charseq.train`):
what a trainer trains (:class:`Trainable`), the budget and precision it is given, the loop state
its checkpoints record, and how it ended (:class:`TrainResult`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol

import attrs
import torch

from charseq.checkpoint import MANIFEST_FILE
from charseq.checkpoint import state as fields
from charseq.checks import is_int
from charseq.errors import CharseqError, warn
from charseq.model import CharModel
from charseq.registry import Registry
from charseq.schedules import horizon_change
from charseq.spec import PipelineSpec

StopReason = Literal["steps", "time", "early stopping", "interrupted", "stop requested"]
"""Why a run stopped: it reached ``train.steps``, spent ``train.max_seconds``, stopped early
(``train.patience``), was interrupted by a signal, or was asked to stop
(:meth:`Trainer.request_stop`, which may also give a reason of its own)."""


@attrs.frozen
class TrainResult:
    """How a run ended: the last step, why it stopped, and the best validation score seen.

    Attributes:
        step: the step the run ended at.
        reason: a :data:`StopReason`, or the reason a callback gave :meth:`Trainer.request_stop`.
        best_val_bpc: the language model's best validation BPC (``None`` without a validation
            split, or for another task).
        checkpoint: the run's last checkpoint (``None`` when nothing is written).
        best: the best value of the task's validation metric (``best_metric``).
        best_metric: which metric: ``"val_bpc"`` for the language model, ``"val_macro_f1"``
            or ``"val_loss"`` for a classifier.
    """

    step: int
    reason: StopReason | str
    best_val_bpc: float | None
    checkpoint: Path | None
    best: float | None = None
    best_metric: str = "val_bpc"


class Trainable(Protocol):
    """What a :class:`Trainer` trains: :class:`~charseq.Pipeline` is one.

    The trainer reads the spec, model and device, builds its optimizer with
    :meth:`build_optimizer`, records :meth:`manifest` in each checkpoint, and keeps
    ``steps_trained`` at its step count.
    """

    spec: PipelineSpec
    model: CharModel | None
    device: torch.device
    steps_trained: int

    def build_optimizer(self, parameters: Any) -> torch.optim.Optimizer: ...

    def manifest(self) -> dict[str, Any]: ...


def check_precision(spec: PipelineSpec, device: torch.device) -> None:
    """Refuse a precision the device cannot train in (bf16 autocast is CUDA-only)."""
    if spec.train.precision == "bf16" and device.type != "cuda":
        raise CharseqError(f"train.precision = 'bf16' needs a CUDA device, not {device}")


def training_state(directory: str | Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The loop's state recorded in a checkpoint's manifest, or why it cannot be resumed."""
    state = manifest.get("trainer")
    if not isinstance(state, dict):
        raise CharseqError(
            f"{directory} holds weights only (no training state): it can be sampled and "
            "evaluated but not resumed"
        )
    return fields.check_fields(Path(directory) / MANIFEST_FILE, "trainer", state, _TRAINER)


_TRAINER = {
    "step": fields.COUNT,
    "batches": fields.TABLE,
    "has_hidden": fields.BOOL,
    "best_val_bpc": fields.NUMBER | fields.NULL,  # the task's best metric (the LM's: BPC)
    "evals_since_best": fields.COUNT,
    "lr_scale": fields.POSITIVE,
    "first_loss": fields.NUMBER | fields.NULL,
    "divergences": fields.COUNT,
    "train_seconds": fields.NOT_NEGATIVE,
    "optimizer": fields.TABLE,
    "rng": fields.TABLE,
    # only in a distributed run's checkpoints: absent means one process
    "world_size": fields.Field("an int >= 2", lambda v: is_int(v) and v >= 2) | fields.NULL,
}
"""The fields of a checkpoint's ``trainer`` table, checked before any is used."""


def with_budget(
    spec: PipelineSpec,
    registry: Registry,
    steps: int | None,
    max_seconds: float | None,
    step: int,
) -> PipelineSpec:
    """``spec`` with ``train.steps`` and ``train.max_seconds`` set where given; a warning if
    that moves the end of the schedule of a run at ``step`` (see ``train.schedule_steps``)."""
    changes = {"train.steps": steps, "train.max_seconds": max_seconds}
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return spec
    changed = spec.override(changes, registry)
    note = horizon_change(spec.train, changed.train, step)
    if note is not None:
        warn(note)
    return changed
