"""The language model: predict each next character, over streams carried from batch to batch
(truncated backpropagation through time)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from charseq.batches import Batch, RandomWindows, StreamBatches
from charseq.errors import CharseqError
from charseq.model import detach
from charseq.scoring import evaluate_ids
from charseq.spec import TrainSpec
from charseq.tasks.base import Batches, Task

if TYPE_CHECKING:
    from charseq.corpus import Splits
    from charseq.train import Trainer


class LanguageModelTask(Task):
    """Next-character prediction: cross-entropy of every position of ``(B, T)`` windows of
    the train split, the hidden state carried between batches of one stream
    (``trainer.hidden``); evaluated as nats/char and BPC over a whole split, stateful."""

    def batches(
        self, splits: Splits, train: TrainSpec, *, shard: tuple[int, int] = (0, 1)
    ) -> Batches:
        if train.batching == "streams":
            return StreamBatches(splits.train, train.batch_size, train.seq_len, shard=shard)
        return RandomWindows(splits.train, train.batch_size, train.seq_len, train.seed, shard=shard)

    def loss(self, trainer: Trainer, batch: Batch) -> Tensor:
        x, y = batch.x.to(trainer.device), batch.y.to(trainer.device)  # (B, T) each
        hidden = None if batch.reset or trainer.hidden is None else detach(trainer.hidden)
        if hidden is None and trainer.compiled:
            hidden = trainer.model.initial_state(x.shape[0])  # one compiled graph for every batch
        with trainer.autocast():
            logits, hidden = trainer.forward(x, hidden)  # (B, T, V)
        trainer.hidden = hidden
        return torch.nn.functional.cross_entropy(
            logits.float().flatten(0, 1),
            y.flatten(),  # (B*T, V) against (B*T,)
        )

    def eval_metrics(self, scores: dict[str, float]) -> dict[str, float]:
        return {"val_nats": scores["nats"], "val_bpc": scores["bpc"]}

    def can_evaluate(self, splits: Splits, split: str) -> bool:
        return len(getattr(splits, split)) >= 2

    def evaluate(
        self, trainer: Trainer, split: str, on_batch: Callable[[int, int], None]
    ) -> dict[str, float]:
        ids = getattr(trainer.splits, split)
        if len(ids) < 2:
            raise CharseqError(f"the {split} split has {len(ids)} token(s); nothing to evaluate")
        train = trainer.spec.train
        total = len(ids) - 1
        on_batch(0, total)
        scores = evaluate_ids(
            trainer.model,
            ids,
            batch_size=train.batch_size,
            seq_len=train.seq_len,
            device=trainer.device,
            on_batch=lambda done: on_batch(done, total),
        )
        on_batch(total, total)
        return scores
