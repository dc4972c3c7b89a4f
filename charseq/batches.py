"""Batches for training and evaluation, read from an id array (a memory-mapped corpus or any
1-D array) without copying more than one batch.

- :class:`StreamBatches`: truncated backpropagation through time, char-rnn style. The ids are
  cut into ``B`` contiguous streams read ``T`` tokens at a time, so row ``b`` of one batch
  continues row ``b`` of the previous one and the trainer carries (and detaches) the hidden state
  between batches.
- :class:`RandomWindows`: ``B`` windows of ``T`` tokens at random places, nanoGPT style; every
  batch starts from a zero state.
- :func:`evaluation_batches`: stateful evaluation over a whole split (the metric,
  :func:`~charseq.scoring.evaluate_ids`, is in :mod:`charseq.scoring`).

Both training batchers are resumable exactly: ``state_dict()`` is JSON-ready and
``load_state_dict`` makes the next batch the one that would have come next. Both can give one
rank's share of each batch (``shard=(rank, world_size)``): the rows
:func:`~charseq.distributed.shard_rows` picks of the batch one process would get, so the ranks
together train on exactly that batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from charseq.checks import is_int, require_int
from charseq.corpus import CorpusError, CorpusTooSmallError
from charseq.distributed import shard_rows
from charseq.errors import warn

__all__ = [
    "IGNORE_INDEX",
    "Batch",
    "RandomWindows",
    "StreamBatches",
    "evaluate_ids",  # noqa: F822 (from charseq.scoring, through __getattr__)
    "evaluation_batches",
    "fit_batch_to_data",
]

IGNORE_INDEX = -100
"""Target value of positions that are read for context but not scored (``cross_entropy``'s
default ``ignore_index``)."""


class Batch(NamedTuple):
    """One batch: inputs ``x`` and targets ``y``, both ``(B, T)`` int64 on the CPU, and ``reset``.

    ``reset`` is True where the rows do not continue the previous batch's rows, so the carried
    hidden state must start again from zeros.
    """

    x: Tensor
    y: Tensor
    reset: bool


def _as_ids(ids: Any) -> np.ndarray:
    if isinstance(ids, Tensor):
        ids = ids.detach().cpu().numpy()
    if not isinstance(ids, np.ndarray):
        ids = np.asarray(ids)
    if ids.ndim != 1:
        raise CorpusError(f"ids must be a 1-D array, got shape {tuple(ids.shape)}")
    if ids.dtype.kind not in "iu":
        raise CorpusError(f"ids must be integers, got dtype {ids.dtype}")
    return ids


def _positive(name: str, value: Any) -> int:
    if not (is_int(value) or isinstance(value, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _rows(ids: np.ndarray, starts: np.ndarray | list[int], length: int) -> np.ndarray:
    """``ids[s : s + length]`` for each start, stacked as int64 (reads only those slices)."""
    out = np.empty((len(starts), length), dtype=np.int64)
    for row, start in enumerate(starts):
        out[row] = ids[int(start) : int(start) + length]
    return out


def _batch(rows: np.ndarray, reset: bool) -> Batch:
    """Rows of ``T + 1`` ids to ``Batch(x = rows[:, :-1], y = rows[:, 1:])``."""
    tensor = torch.from_numpy(rows)
    return Batch(tensor[:, :-1].contiguous(), tensor[:, 1:].contiguous(), reset)


def fit_batch_to_data(
    n_tokens: int, batch_size: int, seq_len: int, *, adapt: bool = True
) -> tuple[int, int]:
    """The ``(batch_size, seq_len)`` to use on ``n_tokens`` tokens of contiguous streams.

    One batch needs ``batch_size * seq_len + 1`` tokens. With fewer, the batch size shrinks
    first, then the sequence length, and a :class:`UserWarning` says what is used.

    Args:
        n_tokens: tokens of the training ids.
        batch_size, seq_len: what the spec asks for.
        adapt: if False, fail instead of shrinking.

    Raises:
        CorpusTooSmallError: fewer than 2 tokens (one input and its target), or too few for one
            batch with ``adapt=False``; the message says the minimum.
    """
    batch_size = _positive("batch_size", batch_size)
    seq_len = _positive("seq_len", seq_len)
    needed = batch_size * seq_len + 1
    if n_tokens >= needed:
        return batch_size, seq_len
    if n_tokens < 2:
        raise CorpusTooSmallError(
            f"the training text has {n_tokens} token(s); training needs at least 2 (one input "
            f"and its target), and one full batch of {batch_size}x{seq_len} needs {needed}"
        )
    if not adapt:
        raise CorpusTooSmallError(
            f"the training text has {n_tokens} tokens; one batch of batch_size={batch_size} x "
            f"seq_len={seq_len} needs at least {needed}. Use more text, a smaller batch_size "
            "or seq_len, or let charseq shrink the batch"
        )
    new_batch = max(1, min(batch_size, (n_tokens - 1) // seq_len))
    new_seq = min(seq_len, (n_tokens - 1) // new_batch)
    warn(
        f"the training text ({n_tokens} tokens) is smaller than one batch of "
        f"{batch_size}x{seq_len} (which needs {needed}); using batch_size={new_batch}, "
        f"seq_len={new_seq}"
    )
    return new_batch, new_seq


class StreamBatches:
    """Truncated-BPTT batches over ``B`` contiguous streams, char-rnn style.

    The ids are cut into ``B`` streams of ``L = (n - 1) // B`` tokens (stream ``b`` starts at
    ``b * L``); each batch is the next ``T`` tokens of every stream, targets shifted by one. A
    pass over the data is ``steps_per_epoch = L // T`` batches (the last ``L % T`` tokens of
    each stream are not read); then it starts again with ``reset=True``. Each ``next()`` copies
    only its ``B * (T + 1)`` ids from ``ids``, so a memory-mapped corpus is never loaded whole.

    A text smaller than one batch shrinks the batch (see :func:`fit_batch_to_data`);
    :attr:`batch_size` and :attr:`seq_len` are the sizes used.

    With ``shard=(rank, N)`` each batch has only this rank's ``B / N`` rows (streams) of the
    ``B`` it would have (:func:`~charseq.distributed.shard_rows`); everything else, the state
    included, is the whole batch's.

    Attributes:
        batch_size, seq_len: B and T (B of the whole batch, all ranks together).
        rows: the rows of each batch this one gives (all of them unless sharded).
        steps_per_epoch: batches per pass over the data.
        position: the step within the current pass of the next batch.
        passes: completed passes.
    """

    def __init__(
        self,
        ids: Any,
        batch_size: int,
        seq_len: int,
        *,
        adapt: bool = True,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.ids = _as_ids(ids)
        self.batch_size, self.seq_len = fit_batch_to_data(
            len(self.ids), batch_size, seq_len, adapt=adapt
        )
        self.rows = shard_rows(self.batch_size, *shard)
        self.stream_len = (len(self.ids) - 1) // self.batch_size
        self.steps_per_epoch = self.stream_len // self.seq_len
        self._starts = (np.arange(self.batch_size, dtype=np.int64) * self.stream_len)[self.rows]
        self.position = 0
        self.passes = 0

    @property
    def epoch(self) -> float:
        """Passes over the data so far, with the fraction of the current one."""
        return self.passes + self.position / self.steps_per_epoch

    def next(self) -> Batch:
        """The next batch: ``x``, ``y`` of shape ``(B, T)`` (``(B / N, T)`` sharded) and
        ``reset`` at the start of a pass."""
        reset = self.position == 0
        rows = _rows(self.ids, self._starts + self.position * self.seq_len, self.seq_len + 1)
        self.position += 1
        if self.position == self.steps_per_epoch:
            self.position = 0
            self.passes += 1
        return _batch(rows, reset)

    __next__ = next

    def __iter__(self) -> Iterator[Batch]:
        return self

    def state_dict(self) -> dict[str, int]:
        """The data cursor, JSON-ready: ``position``, ``passes`` and the sizes it belongs to."""
        return {
            "position": self.position,
            "passes": self.passes,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "tokens": len(self.ids),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`: the next batch is the one that came next then."""
        _check_same(
            state, {"batch_size": self.batch_size, "seq_len": self.seq_len, "tokens": len(self.ids)}
        )
        position, passes = int(state["position"]), int(state["passes"])
        if not 0 <= position < self.steps_per_epoch or passes < 0:
            raise CorpusError(
                f"data cursor position={position}, passes={passes} is outside this data "
                f"({self.steps_per_epoch} steps per pass)"
            )
        self.position, self.passes = position, passes

    def __repr__(self) -> str:
        return (
            f"StreamBatches(tokens={len(self.ids)}, batch_size={self.batch_size}, "
            f"seq_len={self.seq_len}, epoch={self.epoch:.3f})"
        )


def _check_same(state: dict[str, Any], mine: dict[str, int]) -> None:
    if not isinstance(state, dict):
        raise CorpusError(f"a data cursor state is a dict, got {type(state).__name__}")
    for name, value in mine.items():
        if name in state and int(state[name]) != value:
            raise CorpusError(
                f"this data cursor was saved for {name}={state[name]}, but the data now has "
                f"{name}={value}: resume with the same corpus, split and batch settings"
            )


class RandomWindows:
    """``B`` windows of ``T + 1`` tokens at uniformly random places, nanoGPT style.

    Every batch has ``reset=True`` (each row is a fresh window, so the trainer starts from a
    zero state). Draws come from this object's own :class:`numpy.random.Generator` (PCG64,
    seeded by ``seed``), whose state is in :meth:`state_dict`, so a resumed run draws the same
    windows. A text shorter than ``T + 1`` tokens shrinks ``T`` with a warning.

    With ``shard=(rank, N)`` every rank draws all ``B`` windows from the same generator (so
    the ranks stay in step) and reads only its ``B / N`` rows of them
    (:func:`~charseq.distributed.shard_rows`).

    Attributes:
        batch_size, seq_len: B and T (B of the whole batch, all ranks together).
        rows: the rows of each batch this one gives (all of them unless sharded).
        steps: batches drawn so far.
        steps_per_epoch: batches that read as many tokens as the data has (at least 1).
    """

    def __init__(
        self,
        ids: Any,
        batch_size: int,
        seq_len: int,
        seed: int = 0,
        *,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.ids = _as_ids(ids)
        self.batch_size = _positive("batch_size", batch_size)
        self.seq_len = _positive("seq_len", seq_len)
        self.rows = shard_rows(self.batch_size, *shard)
        n = len(self.ids)
        if n < 2:
            raise CorpusTooSmallError(
                f"the training text has {n} token(s); training needs at least 2 (one input and "
                f"its target), and a window of seq_len={self.seq_len} needs {self.seq_len + 1}"
            )
        if n < self.seq_len + 1:
            warn(
                f"the training text ({n} tokens) is shorter than one window of "
                f"seq_len={self.seq_len} (which needs {self.seq_len + 1}); using seq_len={n - 1}"
            )
            self.seq_len = n - 1
        self.steps_per_epoch = max(1, (n - 1) // (self.batch_size * self.seq_len))
        self.rng = np.random.default_rng(seed)
        self.steps = 0

    @property
    def epoch(self) -> float:
        """Tokens read so far, in passes over the data."""
        return self.steps / self.steps_per_epoch

    def next(self) -> Batch:
        """``B`` random windows: ``x``, ``y`` of shape ``(B, T)`` (``(B / N, T)`` sharded),
        ``reset=True``."""
        high = len(self.ids) - self.seq_len  # starts in [0, n - T - 1]: x and y both fit
        starts = self.rng.integers(0, high, size=self.batch_size)[self.rows]
        self.steps += 1
        return _batch(_rows(self.ids, starts, self.seq_len + 1), True)

    __next__ = next

    def __iter__(self) -> Iterator[Batch]:
        return self

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready: ``steps``, the sizes, and the generator state (128-bit numbers as hex)."""
        state = self.rng.bit_generator.state
        inner = state["state"]
        return {
            "steps": self.steps,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "tokens": len(self.ids),
            "rng": {
                "bit_generator": state["bit_generator"],
                "state": format(inner["state"], "x"),
                "inc": format(inner["inc"], "x"),
                "has_uint32": int(state["has_uint32"]),
                "uinteger": int(state["uinteger"]),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`: the next windows are those that came next then."""
        _check_same(
            state, {"batch_size": self.batch_size, "seq_len": self.seq_len, "tokens": len(self.ids)}
        )
        try:
            saved = state["rng"]
            rng = np.random.Generator(np.random.PCG64())
            rng.bit_generator.state = {
                "bit_generator": saved["bit_generator"],
                "state": {"state": int(saved["state"], 16), "inc": int(saved["inc"], 16)},
                "has_uint32": int(saved["has_uint32"]),
                "uinteger": int(saved["uinteger"]),
            }
            steps = int(state["steps"])
        except (KeyError, TypeError, ValueError) as error:
            raise CorpusError(f"not a RandomWindows state: {error}") from None
        self.rng, self.steps = rng, steps

    def __repr__(self) -> str:
        return (
            f"RandomWindows(tokens={len(self.ids)}, batch_size={self.batch_size}, "
            f"seq_len={self.seq_len}, steps={self.steps})"
        )


# -- evaluation ---------------------------------------------------------------------------------


def evaluation_batches(
    ids: Any, batch_size: int, seq_len: int, *, warmup: int = 0
) -> Iterator[Batch]:
    """Batches that score the whole of ``ids`` once, with the state carried across them.

    Targets ``ids[1:]`` are shared out among ``B`` contiguous streams read ``T`` tokens at a
    time (the last batch may be shorter). Only the first batch has ``reset=True``: carry the
    state through the rest. Every target is scored exactly once, except at most ``B - 1`` at the
    very end. With ``B = 1`` the result is exactly a single pass over the text.

    With ``warmup = W > 0``, each stream but the first first reads the ``W`` tokens before its
    part, with targets :data:`IGNORE_INDEX` (not scored), so that its first scored tokens have
    context as they would in a single pass. ``B`` is lowered where the streams would otherwise
    score fewer tokens than they warm up on.

    Args:
        ids: a 1-D id array (e.g. a split of a memory-mapped corpus); at least 2 tokens.
        batch_size: B, the streams read in parallel.
        seq_len: T, the tokens read per batch.
        warmup: W, unscored context read before each stream's part.

    Yields:
        :class:`Batch` es; ``y`` is :data:`IGNORE_INDEX` where a target is not scored.
    """
    ids = _as_ids(ids)
    batch_size = _positive("batch_size", batch_size)
    seq_len = _positive("seq_len", seq_len)
    require_int(warmup, "warmup", min=0, error=ValueError)
    targets = len(ids) - 1
    if targets < 1:
        raise CorpusTooSmallError(
            f"the text to evaluate has {len(ids)} token(s); evaluation needs at least 2"
        )
    return _evaluation_batches(ids, batch_size, seq_len, warmup, targets)


def _evaluation_batches(
    ids: np.ndarray, batch_size: int, seq_len: int, warmup: int, targets: int
) -> Iterator[Batch]:
    if warmup and batch_size > 1:
        # each stream after the first should score at least as many tokens as it warms up on
        batch_size = max(
            1, min(batch_size, (targets - warmup) // warmup if targets > warmup else 1)
        )
    batch_size = min(batch_size, targets)
    warm = warmup if batch_size > 1 else 0
    # Every stream reads `steps` tokens; stream 0 scores all of them, the others all but `warm`.
    steps = (targets + (batch_size - 1) * warm) // batch_size
    scored_start = [0] + [steps + (b - 1) * (steps - warm) for b in range(1, batch_size)]
    read_start = [0] + [s - warm for s in scored_start[1:]]
    starts = np.asarray(read_start, dtype=np.int64)
    for t0 in range(0, steps, seq_len):
        length = min(seq_len, steps - t0)
        rows = _rows(ids, starts + t0, length + 1)
        x, y, _ = _batch(rows, False)
        if warm and t0 < warm:
            y[1:, : warm - t0] = IGNORE_INDEX  # stream 0 has no warmup
        yield Batch(x, y, t0 == 0)


def __getattr__(name: str) -> Any:
    """``evaluate_ids``, which lived here, from :mod:`charseq.scoring`."""
    if name == "evaluate_ids":
        # function-local: charseq.scoring imports this module (its evaluation batches)
        from charseq.scoring import evaluate_ids

        return evaluate_ids
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
