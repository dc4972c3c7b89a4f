"""The training loop: truncated BPTT, evaluation, checkpoints, exact resume, divergence guard.

One :class:`Trainer` trains one pipeline's model on the train split of a corpus. It reports only
through callbacks (:mod:`charseq.callbacks`). Everything exact resume needs is in its
checkpoints: weights, optimizer state, every RNG state, the batch cursor, the carried hidden
state and the loop's counters; resuming at step ``n`` continues bit for bit on the CPU.

Under torchrun (a process group joined, :mod:`charseq.distributed`) every rank runs the loop on
its share of each batch's rows, the model wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel`; rank 0 alone evaluates, writes checkpoints
and tells the callbacks, and the ranks agree on the reported loss and on when to stop.
"""

from __future__ import annotations

import copy
import math
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from charseq import distributed
from charseq.callbacks import Callback, MetricsLog
from charseq.checkpoint import CheckpointStore
from charseq.corpus import Splits
from charseq.errors import CharseqError, TrainingDiverged, warn
from charseq.model import StackState
from charseq.schedules import lr_factor
from charseq.tasks import LanguageModelTask, Task
from charseq.train_state import checkpoint_contents, restore_trainer
from charseq.training_run import (
    StopReason,
    Trainable,
    TrainResult,
    check_precision,
    training_state,
    with_budget,
)

MAX_DIVERGENCES = 8
"""The divergence guard gives up (raises) after this many restores in one run."""

RANK_SEED_STRIDE = 1_000_003
"""Rank ``r > 0`` of a distributed run seeds torch with ``train.seed + r * RANK_SEED_STRIDE``
once the model is built, so each rank draws its own dropout masks for its own rows (rank 0
keeps the stream one process would have)."""

__all__ = [
    "MAX_DIVERGENCES",
    "StopReason",
    "Trainable",
    "Trainer",
    "TrainingDiverged",
    "TrainResult",
    "check_precision",
    "training_state",
    "with_budget",
]


class Trainer:
    """Trains ``pipeline.model`` on ``splits.train``, evaluating on ``splits.val``.

    Args:
        pipeline: what is trained (:class:`Trainable`): a pipeline with a fitted tokenizer and
            a model. Callbacks reach it as ``trainer.pipeline``.
        splits: the corpus splits (``train``, ``val``, ``test`` id arrays and their ``bounds``).
        out_dir: where checkpoints go (``step-XXXXXXXX/``, ``best/``, ``latest.json``), and
            ``metrics.jsonl`` unless ``callbacks`` has a :class:`~charseq.callbacks.MetricsLog`
            of its own; nothing is written if ``None``.
        callbacks: :class:`~charseq.callbacks.Callback` objects told of progress.
        corpus: facts about the corpus stored in checkpoints (hash, sources, encoding, ...).
        handle_signals: on SIGINT/SIGTERM finish the step, save a checkpoint and stop; a second
            signal stops at once. (Only from the main thread; the CLI turns it on.)
        task: what the model is trained to do (:mod:`charseq.tasks`): its batches, loss and
            evaluation; the language model by default.
        world: the processes training the model together (:mod:`charseq.distributed`); by
            default the process group already joined, if any, else this process alone. With
            more than one, ``train.batch_size`` is the global batch, each rank trains on its
            rows of it (drawing its own dropout masks), and only rank 0 writes to ``out_dir``
            and has ``callbacks``.
    """

    def __init__(
        self,
        pipeline: Trainable,
        splits: Splits,
        *,
        out_dir: str | Path | None = None,
        callbacks: Sequence[Callback] = (),
        corpus: dict[str, Any] | None = None,
        handle_signals: bool = False,
        task: Task | None = None,
        world: distributed.World | None = None,
    ) -> None:
        if pipeline.model is None:
            raise CharseqError("the pipeline has no model: build it before training")
        self.pipeline = pipeline
        self.spec = pipeline.spec
        self.model = pipeline.model
        self.device = pipeline.device
        self.splits = splits
        self.world = distributed.current() if world is None else world
        if not self.world.is_main:  # rank 0 alone logs and writes checkpoints
            callbacks, out_dir = (), None
        self.callbacks = list(callbacks)
        if out_dir is not None and not any(isinstance(c, MetricsLog) for c in self.callbacks):
            self.callbacks.append(MetricsLog(Path(out_dir) / "metrics.jsonl"))
        self.corpus = dict(corpus or {})
        self.handle_signals = handle_signals
        train = self.spec.train
        check_precision(self.spec, self.device)
        parallel = self._parallel()
        self.forward = self._compiled(parallel) if train.compile else parallel
        self.compiled = self.forward is not parallel
        """Whether the forward pass is compiled (``train.compile`` on a step loop)."""
        self.optimizer = pipeline.build_optimizer(self.model.parameters())
        for group in self.optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
        self.task = LanguageModelTask() if task is None else task
        if self.world.distributed:
            shard = (self.world.rank, self.world.size)
            self.batches = self.task.batches(splits, train, shard=shard)
            if not self.world.is_main:  # its own dropout masks (a resume restores its state)
                torch.manual_seed(train.seed + RANK_SEED_STRIDE * self.world.rank)
        else:
            self.batches = self.task.batches(splits, train)
        self.store = CheckpointStore(out_dir, keep_last=train.keep_last) if out_dir else None
        self.step = pipeline.steps_trained
        self.hidden: StackState | None = None
        self.best: float | None = None  # the best value of the task's best_metric
        self.evals_since_best = 0
        self.lr_scale = 1.0
        self.first_loss: float | None = None
        self.divergences = 0
        self.train_seconds = 0.0
        self._tick: float | None = None  # when train_seconds was last brought up to date
        self.restored_step: int | None = None
        """The step of the checkpoint :meth:`restore` resumed from (None for a new run)."""
        self._stop = threading.Event()
        self._stop_reason: StopReason | str = "stop requested"
        self._good: dict[str, Any] | None = None

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        """Train until ``train.steps``, ``train.max_seconds``, early stopping or a signal."""
        train = self.spec.train
        if self.step >= train.steps:
            warn(
                f"nothing to train: the model is at step {self.step} and train.steps is "
                f"{train.steps} (the step count to reach); give a higher one (steps=...)",
                argument="steps",
            )
        self._remember_good_state()
        for callback in self.callbacks:
            callback.on_fit_start(self)
        try:
            return self._run()
        except BaseException as error:
            for callback in self.callbacks:
                callback.on_exception(self, self.step, error)
            if self.world.distributed and distributed.is_lost_contact(error):
                raise distributed.lost_contact(self.world, self.step, error) from error
            raise

    def _run(self) -> TrainResult:
        train = self.spec.train
        reason: StopReason | str = "steps"
        evaluated_at = checkpointed_at = None
        with self._signals():
            self._tick = time.perf_counter()
            while self.step < train.steps:
                # 1) stop? a signal or request_stop, or the time budget spent
                now = time.perf_counter()
                self.train_seconds += now - self._tick  # steps, evaluations and checkpoints
                self._tick = now
                stop = self._should_stop()
                if stop is not None:
                    reason = stop
                    break
                # 2) one optimisation step on the next batch
                started = time.perf_counter()
                batch = self.batches.next()
                loss = self.train_step(batch)
                # 3) divergence guard: back to the last good state at a lower rate, step again
                if self._diverged(loss):
                    self._recover(loss)
                    continue
                # 4) report the step
                self.step += 1
                self.pipeline.steps_trained = self.step
                seconds = time.perf_counter() - started
                metrics = {
                    "loss": loss,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "epoch": self.batches.epoch,
                    "chars_per_s": self.task.chars(batch) * self.world.size / max(seconds, 1e-9),
                    "seconds": self.seconds(),
                }
                for callback in self.callbacks:
                    callback.on_step_end(self, self.step, metrics)
                # 5) evaluate and checkpoint (early stopping after too many evaluations
                # without improvement)
                if train.eval_every and self.step % train.eval_every == 0:
                    improved = self._evaluate()
                    evaluated_at = self.step
                    # With checkpoint_every, an improvement is saved too: it is the best.
                    if not train.checkpoint_every or improved:
                        self._checkpoint(improved)
                        checkpointed_at = self.step
                    if train.patience and self.evals_since_best >= train.patience:
                        reason = "early stopping"
                        break
                if (
                    train.checkpoint_every
                    and self.step % train.checkpoint_every == 0
                    and checkpointed_at != self.step
                    and self.step < train.steps  # the last step's, after its evaluation below
                ):
                    self._checkpoint(None)
                    checkpointed_at = self.step
            # 6) the epilogue, still under the handlers: a signal now stops nothing but is not
            # lost either (the last evaluation and checkpoint are written, then the run ends as
            # interrupted).
            improved = None
            if evaluated_at != self.step:
                improved = self._evaluate()
            checkpoint = self.store.latest() if self.store else None
            if checkpointed_at != self.step or improved:  # rewritten as the best it is
                checkpoint = self._checkpoint(improved)
            if self._stop.is_set() and reason != self._stop_reason:
                reason = self._stop_reason
        self.world.barrier()  # every rank returns once rank 0's last checkpoint is written
        for callback in self.callbacks:
            callback.on_fit_end(self, self.step, reason)
        return TrainResult(
            self.step, reason, self.best_val_bpc, checkpoint, self.best, self.task.best_metric
        )

    def _should_stop(self) -> StopReason | str | None:
        """Why the loop stops before its next step (a signal or :meth:`request_stop`, or the
        time budget spent), or ``None``; every rank gives the same answer."""
        max_seconds = self.spec.train.max_seconds
        reason: StopReason | str | None = None
        if self._stop.is_set():
            reason = self._stop_reason
        elif max_seconds and self.train_seconds >= max_seconds:
            reason = "time"
        if not self.world.distributed:
            return reason
        # Any rank's stop stops them all; a requested stop outranks the clock, and its reason
        # is the lowest such rank's.
        stopped = self._stop.is_set()
        code = self.world.all_reduce(2.0 if stopped else float(reason is not None), "max")
        if code == 0:
            return None
        if code == 1:
            return "time"
        size = self.world.size
        src = int(self.world.all_reduce(float(self.world.rank if stopped else size), "min"))
        reason = self.world.broadcast(self._stop_reason if self.world.rank == src else None, src)
        self.request_stop(reason)
        return reason

    @property
    def best_val_bpc(self) -> float | None:
        """The language model's best validation BPC (``None`` for another task)."""
        return self.best if self.task.best_metric == "val_bpc" else None

    def seconds(self) -> float:
        """Seconds spent training so far, up to now: steps, evaluations and checkpoints, summed
        over the run and the runs it resumes (the clock ``train.max_seconds`` reads)."""
        if self._tick is None:
            return self.train_seconds
        return self.train_seconds + time.perf_counter() - self._tick

    def train_step(self, batch: Any) -> float:
        """One optimisation step on ``batch`` (the task's, e.g. a
        :class:`~charseq.batches.Batch`); its loss.

        Sets the scheduled learning rate, runs the task's forward pass and loss (the language
        model carries the hidden state unless the batch starts new sequences), backward,
        clipping and the optimizer step.
        """
        train = self.spec.train
        factor = lr_factor(train, self.step, self.batches.epoch) * self.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        self.model.train()
        loss = self.task.loss(self, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if train.grad_clip > 0:
            if train.clip_mode == "norm":
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), train.grad_clip)
            else:
                torch.nn.utils.clip_grad_value_(self.model.parameters(), train.grad_clip)
        self._optimizer_step()
        return self.world.all_reduce(loss.item())  # the mean of the ranks' (equal) shares

    def _optimizer_step(self) -> None:
        """The optimizer's step; an update too large for float32 is the learning rate's fault
        (what the divergence guard cannot lower its way out of: it raised deep in torch)."""
        try:
            self.optimizer.step()
        except RuntimeError as error:
            if "overflow" not in str(error):
                raise
            lr = self.optimizer.param_groups[0]["lr"]
            raise TrainingDiverged(
                f"step {self.step + 1}: the optimizer's update overflowed float32 (torch: "
                f"{str(error).strip().splitlines()[0]}) at a learning rate of {lr:g}; lower "
                "optimizer.lr"
            ) from None

    def _parallel(self) -> Any:
        """The model, wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` when more
        than one process trains it (it averages the gradients over the ranks in backward)."""
        if not self.world.distributed:
            return self.model
        ids = [self.device.index or 0] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids)

    def _compiled(self, forward: Any) -> Any:
        """``forward`` (the model, or its DDP wrapper) compiled with ``torch.compile``
        (``train.compile``).

        Only for stacks that run the core's step loop: there it turns T small steps into a few
        fused kernels. A stack with a fused whole-sequence kernel (the built-in cells) already
        is one kernel call and is left as it is. Evaluation and generation run uncompiled.
        """
        if self.model.stack.fused_kernel() is not None:
            return forward
        return torch.compile(forward, dynamic=False)

    def autocast(self) -> Any:
        """The forward pass's precision context (``train.precision``)."""
        if self.spec.train.precision == "bf16":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return nullcontext()

    # -- evaluation and checkpoints ------------------------------------------------------------

    def evaluate(self, split: str = "val") -> dict[str, float]:
        """The task's metrics of ``split`` (the language model's: nats/char and BPC, stateful
        over the whole split); callbacks' ``on_eval_progress`` follow it."""
        reported = -1

        def report(done: int, total: int) -> None:  # callbacks see the evaluation's progress
            nonlocal reported
            if done != reported:
                reported = done
                for callback in self.callbacks:
                    callback.on_eval_progress(self, split, done, total)

        return self.task.evaluate(self, split, report)

    def _evaluate(self) -> bool | None:
        """Evaluate on val, track the best; ``None`` when there is no val split.

        Rank 0 alone evaluates; the others take its verdict, so all agree on early stopping.
        """
        if not self.task.can_evaluate(self.splits, "val"):
            return None
        improved = self._evaluate_here() if self.world.is_main else None
        improved, self.best, self.evals_since_best = self.world.broadcast(
            [improved, self.best, self.evals_since_best]
        )
        if not self.world.is_main:
            self._remember_good_state()
        return improved

    def _evaluate_here(self) -> bool:
        """Evaluate on val in this process, track the best and tell the callbacks."""
        task = self.task
        metrics = task.eval_metrics(self.evaluate("val"))
        value = metrics[task.best_metric]
        best = self.best
        improved = best is None or (value < best if task.lower_is_better else value > best)
        if improved:
            self.best = value
            self.evals_since_best = 0
        else:
            self.evals_since_best += 1
        self._remember_good_state()
        metrics |= {f"best_{task.best_metric}": self.best, "seconds": self.seconds()}
        for callback in self.callbacks:
            callback.on_eval(self, self.step, metrics)
        return improved

    def _checkpoint(self, improved: bool | None) -> Path | None:
        hidden, rngs = self.whole_hidden(), self.ranks_rng()  # every rank takes part
        if self.store is None:  # rank 0 writes
            return None
        tensors, manifest = checkpoint_contents(self, hidden, rngs)
        metric = self.best if improved else None
        lower = self.task.lower_is_better
        path = self.store.save(self.step, tensors, manifest, metric=metric, lower_is_better=lower)
        for callback in self.callbacks:
            callback.on_checkpoint(self, self.step, path)
        return path

    def checkpoint_contents(self) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
        """The tensors and manifest of a checkpoint of the run as it stands
        (:func:`charseq.train_state.checkpoint_contents`); with several processes, every rank
        must call it (the carried state is gathered from them all)."""
        return checkpoint_contents(self, self.whole_hidden(), self.ranks_rng())

    def whole_hidden(self) -> StackState | None:
        """The carried hidden state of the whole batch: this process's, or with several
        processes every rank's rows joined in rank order (every rank must call it), so that a
        checkpoint holds what one process training on the whole batch would."""
        if self.hidden is None or not self.world.distributed:
            return self.hidden
        return [tuple(self.world.all_gather_rows(t) for t in layer) for layer in self.hidden]

    def ranks_rng(self) -> dict[str, torch.Tensor]:
        """The torch RNG states of ranks 1 to N-1 (``torch.rankR``, and ``cuda.rankR`` for
        their GPUs), gathered from every rank (every rank must call it): what draws their
        dropout masks. Empty for one process (rank 0's states are the checkpoint's own)."""
        if not self.world.distributed:
            return {}
        states = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            states["cuda"] = torch.cuda.get_rng_state(self.device)
        gathered = {}
        for kind, state in states.items():
            rows = self.world.all_gather_rows(state[None])  # (N, state bytes)
            gathered |= {f"{kind}.rank{r}": rows[r] for r in range(1, self.world.size)}
        return gathered

    def restore(self, directory: str | Path, manifest: dict[str, Any]) -> None:
        """Put the loop back where the checkpoint in ``directory`` left it
        (:func:`charseq.train_state.restore_trainer`)."""
        restore_trainer(self, directory, manifest)

    # -- the divergence guard ------------------------------------------------------------------

    def _diverged(self, loss: float) -> bool:
        factor = self.spec.train.divergence_factor
        if not math.isfinite(loss):
            return True
        if self.first_loss is None:
            self.first_loss = loss
            return False
        return factor > 0 and loss > factor * self.first_loss

    def _remember_good_state(self) -> None:
        self._good = {
            "model": copy.deepcopy(self.model.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "batches": copy.deepcopy(self.batches.state_dict()),
            "step": self.step,
        }

    def _recover(self, loss: float) -> None:
        self.divergences += 1
        if self.divergences > MAX_DIVERGENCES or self._good is None:
            raise TrainingDiverged(
                f"the loss diverged {self.divergences} times (last {loss}) even with the learning "
                f"rate lowered to {self.lr_scale:g}x; lower optimizer.lr or raise train.grad_clip"
            )
        good, diverged_at = self._good, self.step + 1  # the step whose loss diverged
        self.model.load_state_dict(good["model"])
        self.optimizer.load_state_dict(good["optimizer"])
        self.batches.load_state_dict(good["batches"])
        self.step = self.pipeline.steps_trained = good["step"]
        self.hidden = None
        self.lr_scale *= 0.5
        message = (
            f"step {diverged_at}: the loss diverged ({loss:.4g}); restored the state of step "
            f"{good['step']} and lowered the learning rate to {self.lr_scale:g}x"
        )
        for callback in self.callbacks:
            callback.on_divergence(self, self.step, message)

    # -- signals -------------------------------------------------------------------------------

    def request_stop(self, reason: StopReason | str = "stop requested") -> None:
        """Finish the current step, save a checkpoint and stop (what the first Ctrl-C does).

        ``reason`` becomes the run's :attr:`TrainResult.reason`; a signal's is
        ``"interrupted"``.
        """
        self._stop_reason = reason
        self._stop.set()

    @contextmanager
    def _signals(self) -> Iterator[None]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def first(signum: int, frame: Any) -> None:
            self.request_stop("interrupted")
            for s in previous:  # a second signal interrupts at once
                signal.signal(s, signal.default_int_handler)

        for s in previous:
            signal.signal(s, first)
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
