"""Learning-rate schedules: a factor on the optimizer's base learning rate, from step and epoch.

A schedule is a pure function of the training position, so resuming at step ``n`` gives the
rate an unbroken run had at step ``n`` with no scheduler state to save.

- ``constant``: always 1.
- ``epoch-decay``: once ``decay_after_epochs`` whole epochs are done, multiply by
  ``decay_rate``, and again every ``decay_every_epochs`` epochs after that. char-rnn decays by
  0.97 every epoch after 10; torch-rnn halves every 5 epochs (after 5, every 5).
- ``cosine``: linear warm-up over ``warmup_steps`` from 0 to 1, then a half cosine down to
  ``min_lr_ratio`` at its :func:`horizon` (nanoGPT's schedule): ``schedule_steps``, or ``steps``
  when that is 0. A run resumed with more ``steps`` then stretches its curve from there on
  (:func:`horizon_change` says so); one trained in parts with ``schedule_steps`` set to the
  total follows one curve, as if trained in one go.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from charseq.spec import TrainSpec

SCHEDULES = ("constant", "epoch-decay", "cosine")


def lr_factor(train: TrainSpec, step: int, epoch: float) -> float:
    """The factor for the update made at ``step`` (0-based) during ``epoch`` (passes done)."""
    if train.schedule == "constant":
        return 1.0
    if train.schedule == "epoch-decay":
        done = math.floor(epoch) - train.decay_after_epochs
        return train.decay_rate ** (done // train.decay_every_epochs + 1) if done >= 0 else 1.0
    if train.schedule == "cosine":
        if step < train.warmup_steps:
            return (step + 1) / train.warmup_steps
        span = max(1, horizon(train) - train.warmup_steps)
        progress = min(1.0, (step - train.warmup_steps) / span)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return train.min_lr_ratio + (1.0 - train.min_lr_ratio) * cosine
    raise ValueError(f"unknown schedule {train.schedule!r}; schedules: {', '.join(SCHEDULES)}")


def horizon(train: TrainSpec) -> int:
    """The step at which the cosine schedule reaches ``min_lr_ratio``."""
    return train.schedule_steps or train.steps


def horizon_change(before: TrainSpec, after: TrainSpec, step: int) -> str | None:
    """What continuing a run at ``step`` with ``after`` instead of ``before`` (a new
    ``train.steps``) does to its cosine schedule, in one line; ``None`` if nothing."""
    if after.schedule != "cosine" or not 0 < step < after.steps:
        return None  # no schedule, or nothing done or nothing to do
    if horizon(before) == horizon(after):
        return None
    was, now = lr_factor(before, step, 0.0), lr_factor(after, step, 0.0)
    return (
        f"the cosine schedule now ends at step {horizon(after)} (train.steps) instead of "
        f"{horizon(before)}: from step {step + 1} the learning rate is {now:.3g}x optimizer.lr "
        f"instead of {was:.3g}x. To train a run in parts along one curve, start it with "
        "train.schedule_steps set to the total"
    )
