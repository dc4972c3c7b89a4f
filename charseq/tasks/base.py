"""The task interface the :class:`~charseq.train.Trainer` delegates to."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from torch import Tensor

from charseq.spec import TrainSpec

if TYPE_CHECKING:
    from charseq.corpus import Splits
    from charseq.train import Trainer


class Batches(Protocol):
    """A source of training batches that checkpoints can put back exactly."""

    epoch: int

    def next(self) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Task(abc.ABC):
    """What a model is trained to do: its batches, its loss and its evaluation.

    Attributes:
        best_metric: the evaluation metric that picks the best checkpoint and stops early
            (``"val_bpc"``), one of :meth:`eval_metrics`' keys.
        lower_is_better: whether a lower ``best_metric`` is better.
    """

    best_metric: str = "val_bpc"
    lower_is_better: bool = True

    def chars(self, batch: Any) -> int:
        """How many characters ``batch`` trains on (for the speed the progress shows)."""
        return int(batch.x.numel())

    @abc.abstractmethod
    def batches(
        self, splits: Splits, train: TrainSpec, *, shard: tuple[int, int] = (0, 1)
    ) -> Batches:
        """The training batches drawn from ``splits.train``.

        ``shard=(rank, world_size)``: only this rank's rows of each batch of
        ``train.batch_size`` rows (:func:`charseq.distributed.shard_rows`), the trainer's when
        several processes train together; a task that cannot share its batches raises
        :class:`~charseq.distributed.DistributedError`.
        """

    @abc.abstractmethod
    def loss(self, trainer: Trainer, batch: Any) -> Tensor:
        """The forward pass on ``batch`` (the model in training mode, under the trainer's
        autocast) and its scalar loss, ready for ``backward``."""

    @abc.abstractmethod
    def can_evaluate(self, splits: Splits, split: str) -> bool:
        """Whether ``split`` holds enough to evaluate (a run with no val split skips it)."""

    @abc.abstractmethod
    def eval_metrics(self, scores: dict[str, float]) -> dict[str, float]:
        """What an evaluation's ``scores`` (:meth:`evaluate`'s) log, named ``val_...``."""

    @abc.abstractmethod
    def evaluate(
        self, trainer: Trainer, split: str, on_batch: Callable[[int, int], None]
    ) -> dict[str, float]:
        """The metrics of ``split``; ``on_batch(done, total)`` reports how far it has got."""
