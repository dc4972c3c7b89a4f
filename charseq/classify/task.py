"""Many-to-one training for the :class:`~charseq.train.Trainer`: batches of whole labelled
texts, cross-entropy of one label per text, and accuracy and macro-F1 on a split.

The examples are encoded once (:class:`Examples`); each epoch visits the training examples in
an order drawn from ``train.seed`` and the epoch, so a batch cursor (epoch, position) is all a
checkpoint needs to continue exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import torch
from torch import Tensor

from charseq.classify.metrics import ClassificationMetrics, classification_metrics
from charseq.classify.model import pad
from charseq.distributed import DistributedError
from charseq.spec import TaskSpec, TrainSpec
from charseq.tasks.base import Task

if TYPE_CHECKING:
    from charseq.train import Trainer


@attrs.frozen
class Examples:
    """Labelled texts as ids, split: ``ids[i]`` is text ``i``'s ids, ``labels[i]`` its class
    index; ``train``, ``val`` and ``test`` index them.

    Attributes:
        classes: the class names, in the order of the classifier's outputs.
    """

    ids: tuple[np.ndarray, ...]
    labels: np.ndarray  # (N,) int64
    classes: tuple[str, ...]
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    @property
    def bounds(self) -> list[int]:
        """How many examples each split holds (what a checkpoint records of them)."""
        return [len(self.train), len(self.val), len(self.test)]


@attrs.frozen
class LabelledBatch:
    """Texts right-padded to ``x (B, T)``, their ``lengths (B,)`` and labels ``y (B,)``."""

    x: Tensor
    lengths: Tensor
    y: Tensor


class LabelledBatches:
    """Batches of ``batch_size`` training examples, each epoch in a new order (from ``seed``
    and the epoch); the last batch of an epoch may be smaller."""

    def __init__(self, examples: Examples, batch_size: int, seed: int) -> None:
        self.examples = examples
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.position = 0
        self._order = self._shuffled(0)

    def _shuffled(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        return rng.permutation(self.examples.train)

    def next(self) -> LabelledBatch:
        if self.position >= len(self._order):
            self.epoch += 1
            self.position = 0
            self._order = self._shuffled(self.epoch)
        chosen = self._order[self.position : self.position + self.batch_size]
        self.position += len(chosen)
        x, lengths = pad([self.examples.ids[i] for i in chosen])
        return LabelledBatch(x, lengths, torch.as_tensor(self.examples.labels[chosen]))

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._shuffled(self.epoch)


class ClassificationTask(Task):
    """One label per text: cross-entropy of the classifier's logits (weighted by class when
    ``class_weights = "balanced"``); evaluated as loss, accuracy and macro-F1."""

    def __init__(self, task: TaskSpec, examples: Examples) -> None:
        self.spec = task
        self.examples = examples
        self.best_metric = "val_macro_f1" if task.metric == "macro_f1" else "val_loss"
        self.lower_is_better = task.metric == "loss"
        self.weights: Tensor | None = None
        if task.class_weights == "balanced":
            counts = np.bincount(examples.labels[examples.train], minlength=len(examples.classes))
            self.weights = torch.as_tensor(
                len(examples.train) / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32
            )

    def batches(
        self, splits: Any, train: TrainSpec, *, shard: tuple[int, int] = (0, 1)
    ) -> LabelledBatches:
        if shard[1] > 1:
            raise DistributedError(
                "a classifier trains in one process only, for now (task 'classify' cannot "
                "share its batches among processes)"
            )
        return LabelledBatches(self.examples, train.batch_size, train.seed)

    def chars(self, batch: LabelledBatch) -> int:
        return int(batch.lengths.sum())

    def loss(self, trainer: Trainer, batch: LabelledBatch) -> Tensor:
        device = trainer.device
        with trainer.autocast():
            logits = trainer.model(batch.x.to(device), batch.lengths.to(device))  # (B, C)
        weights = None if self.weights is None else self.weights.to(device)
        return torch.nn.functional.cross_entropy(logits.float(), batch.y.to(device), weights)

    def can_evaluate(self, splits: Any, split: str) -> bool:
        return len(getattr(self.examples, split)) > 0

    def eval_metrics(self, scores: dict[str, float]) -> dict[str, float]:
        return {f"val_{key}": value for key, value in scores.items()}

    def evaluate(
        self, trainer: Trainer, split: str, on_batch: Callable[[int, int], None]
    ) -> dict[str, float]:
        metrics, loss = self.metrics(trainer.model, split, trainer.spec.train.batch_size, on_batch)
        return {"loss": loss, "accuracy": metrics.accuracy, "macro_f1": metrics.macro_f1}

    def metrics(
        self,
        model: torch.nn.Module,
        split: str,
        batch_size: int,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> tuple[ClassificationMetrics, float]:
        """The classification metrics of ``split`` and its mean loss."""
        chosen = getattr(self.examples, split)
        predicted, loss = predict_ids(
            model, [self.examples.ids[i] for i in chosen], self.examples.labels[chosen],
            batch_size, on_batch,
        )  # fmt: skip
        true = self.examples.labels[chosen]
        return classification_metrics(true, predicted, self.examples.classes), loss


@torch.no_grad()
def predict_proba(
    model: torch.nn.Module,
    texts: Sequence[np.ndarray | Sequence[int]],
    batch_size: int,
    on_batch: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Class probabilities ``(N, C)`` of texts of ids, ``batch_size`` at a time, in eval mode."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(texts), batch_size):
            x, lengths = pad(list(texts[start : start + batch_size]))
            logits = model(x.to(device), lengths.to(device)).float()  # (B, C)
            out.append(torch.softmax(logits, dim=1).cpu().numpy())
            if on_batch is not None:
                on_batch(min(start + batch_size, len(texts)), len(texts))
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, model.num_classes))


def predict_ids(
    model: torch.nn.Module,
    texts: Sequence[np.ndarray],
    labels: np.ndarray,
    batch_size: int,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, float]:
    """The predicted class of each text and the mean cross-entropy against ``labels``."""
    if on_batch is not None:
        on_batch(0, len(texts))
    probs = predict_proba(model, texts, batch_size, on_batch)  # (N, C)
    picked = probs[np.arange(len(labels)), labels]
    loss = float(-np.log(np.maximum(picked, 1e-12)).mean()) if len(labels) else float("nan")
    return probs.argmax(axis=1), loss
