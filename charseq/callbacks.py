"""Callbacks: the single way the training loop reports. The loop itself never prints.

Subclass :class:`Callback` and override what you need. Built in: :class:`ProgressBar` (tqdm),
:class:`MetricsLog` (one JSON object per line) and :class:`SampleEvery` (a sample every N steps,
as the Keras example prints one at each epoch's end).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from charseq.files import atomic_write
from charseq.progress import EVAL_PROGRESS_TOKENS, open_bar

if TYPE_CHECKING:
    from charseq.train import Trainer


class Callback:
    """Hooks into training. ``trainer.pipeline`` is the pipeline being trained.

    Attributes:
        samples_with_the_spec: whether the callback samples with the pipeline's own sampler
            (then a fit refuses to start when that sampler's plugin is not installed).
    """

    samples_with_the_spec: bool = False

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first step (also after a resume)."""

    def on_step_end(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        """After each optimizer step: ``loss`` (nats/char), ``lr``, ``epoch``, ``chars_per_s``,
        ``seconds`` (of training so far, :meth:`~charseq.train.Trainer.seconds`)."""

    def on_eval_progress(self, trainer: Trainer, split: str, done: int, total: int) -> None:
        """During an evaluation of ``split``: ``done`` of about ``total`` tokens scored so far;
        first with ``done == 0``, last with ``done == total``."""

    def on_eval(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        """After each evaluation: the task's metrics and its best (the language model's
        ``val_nats``, ``val_bpc``, ``best_val_bpc``; a classifier's ``val_loss``,
        ``val_accuracy``, ``val_macro_f1`` and its best), and ``seconds``."""

    def on_checkpoint(self, trainer: Trainer, step: int, path: Path) -> None:
        """After a checkpoint is written to ``path``."""

    def on_divergence(self, trainer: Trainer, step: int, message: str) -> None:
        """After the divergence guard restored the last good state and lowered the rate."""

    def on_fit_end(self, trainer: Trainer, step: int, reason: str) -> None:
        """After the last step; ``reason`` says why training stopped."""

    def on_exception(self, trainer: Trainer, step: int, error: BaseException) -> None:
        """When training raises ``error`` after :meth:`on_fit_start` (instead of
        :meth:`on_fit_end`); the error then propagates. Release what ``on_fit_start`` took."""


class ProgressBar(Callback):
    """A tqdm bar: step, the training and validation loss (both in nats per token), the best
    validation BPC, chars/s and ETA; notices go above the bar.

    An evaluation of at least ``eval_min_tokens`` tokens (the last one, after the bar has
    reached 100%, included) shows a second bar while it runs. Given to ``Pipeline.fit`` or
    ``resume``, it also has reading and encoding a large corpus show bars (see
    :mod:`charseq.progress`).
    """

    def __init__(self, file: TextIO | None = None, eval_min_tokens: int | None = None) -> None:
        self.file = file
        self.eval_min_tokens = EVAL_PROGRESS_TOKENS if eval_min_tokens is None else eval_min_tokens
        self.bar: Any = None
        self.eval_bar: Any = None
        self.postfix = {"loss": "-", "val_loss": "-", "best_bpc": "-", "chars_s": "-"}

    def on_fit_start(self, trainer: Trainer) -> None:
        from tqdm.auto import tqdm

        if trainer.task.best_metric != "val_bpc":  # a classifier's: accuracy, macro-F1 on val
            self.postfix = {"loss": "-", "val_acc": "-", "val_f1": "-", "chars_s": "-"}

        self.bar = tqdm(
            total=trainer.spec.train.steps,
            initial=trainer.step,
            unit="step",
            file=self.file or sys.stderr,
            dynamic_ncols=True,
        )
        if trainer.compiled:  # train.compile on a step loop
            self.bar.write(
                "train.compile: the first step compiles the step loop with torch.compile "
                "(a minute or more on a CPU; torch's cache starts later runs of the same shapes "
                "in seconds)",
                file=self.file or sys.stderr,
            )

    def on_step_end(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        self.bar.update(1)
        self.postfix.update(loss=f"{metrics['loss']:.3f}", chars_s=f"{metrics['chars_per_s']:.0f}")
        self.bar.set_postfix(self.postfix, refresh=False)

    def on_eval_progress(self, trainer: Trainer, split: str, done: int, total: int) -> None:
        if self.eval_bar is None:
            if done >= total or total < self.eval_min_tokens:
                return
            self.eval_bar = open_bar(f"evaluating {split}", total, unit="tok", file=self.file)
        self.eval_bar.update(done - self.eval_bar.n)
        if done >= total:
            self._close_eval_bar()

    def _close_eval_bar(self) -> None:
        if self.eval_bar is not None:
            self.eval_bar.close()
            self.eval_bar = None

    def on_eval(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        if "val_nats" in metrics:  # val_loss in the training loss's unit; the best as BPC
            self.postfix.update(
                val_loss=f"{metrics['val_nats']:.3f}", best_bpc=f"{metrics['best_val_bpc']:.3f}"
            )
        else:  # a classifier's: accuracy and macro-F1 on val
            self.postfix.update(
                val_acc=f"{metrics['val_accuracy']:.3f}", val_f1=f"{metrics['val_macro_f1']:.3f}"
            )
        self.bar.set_postfix(self.postfix)  # shown now: the run may end with this evaluation

    def on_divergence(self, trainer: Trainer, step: int, message: str) -> None:
        self.bar.write(message, file=self.file or sys.stderr)

    def on_fit_end(self, trainer: Trainer, step: int, reason: str) -> None:
        self._close_eval_bar()
        self.bar.close()

    def on_exception(self, trainer: Trainer, step: int, error: BaseException) -> None:
        self._close_eval_bar()
        self.bar.close()


def shows_progress(callbacks: Iterable[Callback]) -> bool:
    """Whether ``callbacks`` show a progress bar (then the slow phases around training do too)."""
    return any(isinstance(callback, ProgressBar) for callback in callbacks)


class MetricsLog(Callback):
    """Appends one JSON object per step, evaluation and checkpoint to ``path`` (JSON Lines).

    The file and its folder are created on the first record. When a run is resumed, the
    records written after the checkpoint it resumes from (the work a killed or stopped run
    lost, which the resume does again) are removed first, so that no step is logged twice.
    """

    def __init__(self, path: str | Path, every: int = 1) -> None:
        self.path = Path(path)
        self.every = every

    def on_fit_start(self, trainer: Trainer) -> None:
        if trainer.restored_step is not None and self.path.is_file():
            truncate_metrics(self.path, trainer.restored_step)

    def _write(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")

    def on_step_end(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        if step % self.every == 0:
            self._write({"event": "step", "step": step, **metrics})

    def on_eval(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        self._write({"event": "eval", "step": step, **metrics})

    def on_checkpoint(self, trainer: Trainer, step: int, path: Path) -> None:
        self._write({"event": "checkpoint", "step": step, "path": str(path)})

    def on_divergence(self, trainer: Trainer, step: int, message: str) -> None:
        self._write({"event": "divergence", "step": step, "message": message})


class SampleEvery(Callback):
    """Every ``every`` steps, generate ``length`` characters after ``prime`` and pass them on.

    Sampling uses its own seeded generator, so it never changes the course of training.

    Args:
        every: steps between samples.
        write: receives ``(step, text)``; default: write to standard error.
        prime, length, sampler, seed: as for :meth:`charseq.Pipeline.generate`.
    """

    def __init__(
        self,
        every: int,
        write: Callable[[int, str], None] | None = None,
        *,
        prime: str = "",
        length: int = 200,
        sampler: Any = None,
        seed: int = 0,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every = every
        self.write = write or _to_stderr
        self.prime, self.length, self.sampler, self.seed = prime, length, sampler, seed

    @property
    def samples_with_the_spec(self) -> bool:  # type: ignore[override]
        """Whether it samples with the pipeline's own sampler (no ``sampler`` given)."""
        return self.sampler is None

    def on_step_end(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        if step % self.every == 0:
            text = trainer.pipeline.generate(
                self.prime, self.length, sampler=self.sampler, seed=self.seed
            )
            self.write(step, self.prime + text)


def truncate_metrics(path: Path, step: int) -> None:
    """Cut the JSON Lines log ``path`` back to where a run's checkpoint of ``step`` left it.

    It keeps the lines up to the last ``{"event": "checkpoint", "step": step}`` record; where
    there is none (a run killed between writing that checkpoint and logging it), the records of
    steps up to ``step`` and any line that names no step. A last line without its newline (cut
    short by a kill) goes too. The file is replaced atomically.
    """
    with path.open("rb") as file:
        lines = file.readlines()
    if lines and not lines[-1].endswith(b"\n"):
        lines.pop()
    records = [_record(line) for line in lines]
    marks = [
        i for i, r in enumerate(records) if r.get("event") == "checkpoint" and r.get("step") == step
    ]
    if marks:
        kept = lines[: marks[-1] + 1]
    else:
        kept = [
            line
            for line, record in zip(lines, records, strict=True)
            if not isinstance(record.get("step"), int) or record["step"] <= step
        ]
    if len(kept) == len(lines) and path.stat().st_size == sum(map(len, lines)):
        return
    with atomic_write(path) as file:
        file.writelines(kept)


def _record(line: bytes) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _to_stderr(step: int, text: str) -> None:
    print(f"--- sample at step {step}\n{text}", file=sys.stderr)
