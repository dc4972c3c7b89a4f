"""Several processes training one model: the torchrun environment and the process group.

``torchrun`` starts one process per rank and tells each who it is through environment
variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``).
:func:`init` reads them, joins the process group and returns a :class:`World`: the little the
trainer needs of ``torch.distributed`` (its rank, a barrier, the mean of a float, a small object
sent from rank 0). Without those variables :func:`init` returns a world of one process whose
methods do nothing, so one process runs exactly as it would without this module.

The backend is gloo on the CPU and NCCL on CUDA, unless ``backend=`` or the
``CHARSEQ_DIST_BACKEND`` environment variable names another. Objects are sent as JSON, never
pickled.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar

import torch
import torch.distributed as dist

from charseq.errors import CharseqError

__all__ = [
    "BACKEND_ENV",
    "SINGLE",
    "DistributedError",
    "TorchrunEnv",
    "World",
    "current",
    "default_backend",
    "detect",
    "init",
    "is_lost_contact",
    "local_device",
    "lost_contact",
    "on_every_rank",
    "shard_rows",
    "shutdown",
]

T = TypeVar("T")

BACKEND_ENV = "CHARSEQ_DIST_BACKEND"
"""The environment variable that overrides the automatic backend (``gloo`` or ``nccl``)."""

ReduceOp = Literal["sum", "mean", "max", "min"]
_OPS = {
    "sum": dist.ReduceOp.SUM,
    "mean": dist.ReduceOp.SUM,  # then divided by the world size
    "max": dist.ReduceOp.MAX,
    "min": dist.ReduceOp.MIN,
}


class DistributedError(CharseqError):
    """A distributed run is set up wrongly (its environment, backend or batch sharing)."""


@dataclass(frozen=True)
class TorchrunEnv:
    """What torchrun's environment variables say about this process."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int


def detect(environ: dict[str, str] | None = None) -> TorchrunEnv | None:
    """This process's place in a torchrun job, or ``None`` when it is not in one.

    A job is recognised by ``RANK`` and ``WORLD_SIZE``; ``LOCAL_RANK`` defaults to ``RANK``,
    ``MASTER_ADDR`` to ``127.0.0.1`` and ``MASTER_PORT`` to 29500 (torchrun's defaults).

    Raises:
        DistributedError: a variable is not a number, or the rank is outside the world.
    """
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        rank, size = int(env["RANK"]), int(env["WORLD_SIZE"])
        local_rank = int(env.get("LOCAL_RANK", rank))
        port = int(env.get("MASTER_PORT", "29500"))
    except ValueError as error:
        raise DistributedError(
            f"a torchrun environment variable is not a number: {error}"
        ) from None
    if size < 1 or not 0 <= rank < size:
        raise DistributedError(f"RANK={rank} is outside WORLD_SIZE={size}")
    return TorchrunEnv(rank, size, local_rank, env.get("MASTER_ADDR", "127.0.0.1"), port)


def default_backend(device: str | torch.device | None = None, backend: str | None = None) -> str:
    """The process group's backend: ``backend`` if given, else ``$CHARSEQ_DIST_BACKEND``, else
    NCCL for a CUDA device and gloo otherwise."""
    chosen = backend or os.environ.get(BACKEND_ENV)
    if chosen:
        return chosen
    return "nccl" if device is not None and torch.device(device).type == "cuda" else "gloo"


class World:
    """The processes training one model, as the trainer sees them.

    A world of one (:data:`SINGLE`) does nothing: its reductions return their input and its
    broadcast returns the object itself.

    Attributes:
        rank: this process's rank, 0 to ``size - 1``.
        size: the number of processes.
        local_rank: the rank on this machine (which GPU it uses).
        device: where collectives' tensors live (the CPU for gloo, this rank's GPU for NCCL).
    """

    def __init__(
        self, rank: int = 0, size: int = 1, local_rank: int = 0, device: str = "cpu"
    ) -> None:
        self.rank, self.size, self.local_rank = rank, size, local_rank
        self.device = torch.device(device)

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that evaluates, logs and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether there is more than one process."""
        return self.size > 1

    def barrier(self) -> None:
        """Wait until every rank has come here."""
        if self.distributed:
            dist.barrier()

    def all_reduce(self, value: float, op: ReduceOp = "mean") -> float:
        """``value`` reduced over the ranks (``sum``, ``mean``, ``max`` or ``min``), in float64."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=_OPS[op])
        total = tensor.item()
        return total / self.size if op == "mean" else total

    def all_gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's ``tensor`` (the same shape on each), joined in rank order along the
        first dimension: the rows of a whole batch from the ranks' shares."""
        if not self.distributed:
            return tensor
        local = tensor.detach().to(self.device).contiguous()
        parts = [torch.empty_like(local) for _ in range(self.size)]
        dist.all_gather(parts, local)
        return torch.cat(parts).to(tensor.device)

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank; ``obj`` must be JSON-ready (no pickle).

        The other ranks' ``obj`` is ignored (pass ``None``).
        """
        if not self.distributed:
            return obj
        data = json.dumps(obj).encode() if self.rank == src else b""
        length = torch.tensor([len(data)], dtype=torch.int64, device=self.device)
        dist.broadcast(length, src)
        buffer = torch.zeros(int(length.item()), dtype=torch.uint8, device=self.device)
        if self.rank == src:
            buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        dist.broadcast(buffer, src)
        return json.loads(bytes(buffer.cpu().tolist()).decode())

    def check(self, error: BaseException | None, what: str) -> None:
        """Agree on whether every rank managed ``what``; every rank calls it with its own
        ``error`` (``None`` if it went well).

        If any rank failed, every rank raises: the failing rank (the lowest, if several) its
        own error, the others a :class:`DistributedError` naming that rank and its message, so
        no rank is left waiting for the others in a later collective.
        """
        if not self.distributed:
            if error is not None:
                raise error
            return
        failed = int(self.all_reduce(float(self.size if error is None else self.rank), "min"))
        if failed == self.size:
            return
        message = self.broadcast(_describe(error) if self.rank == failed else None, failed)
        if self.rank == failed and error is not None:
            raise error
        raise DistributedError(f"rank {failed} could not {what}: {message}")

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size}, local_rank={self.local_rank})"


def on_every_rank(world: World, what: str, work: Callable[[], T]) -> T:
    """``work()`` on this rank, then :meth:`World.check`: if it failed on any rank, it raises on
    every rank (``what`` says what was being done, for the others' message)."""
    try:
        result = work()
    except Exception as error:
        world.check(error, what)
        raise  # not reached: check raises this rank's own error
    world.check(None, what)
    return result


def is_lost_contact(error: BaseException) -> bool:
    """Whether ``error`` is a collective failing because another rank is gone (torch raises a
    ``DistBackendError``, or from DDP's backward a ``RuntimeError`` of the transport's)."""
    if isinstance(error, dist.DistError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        mark in text for mark in ("gloo/transport", "Connection reset", "Connection closed", "NCCL")
    )


def lost_contact(world: World, step: int, error: BaseException) -> DistributedError:
    """The error a rank raises when a collective fails during training: another process of
    the job has died or cannot be reached."""
    return DistributedError(
        f"rank {world.rank} of {world.size} lost contact with the other processes after step "
        f"{step} ({_describe(error)}): another rank has stopped (torchrun's summary names it); "
        "the run directory keeps its last checkpoint: continue it with --resume on "
        f"{world.size} processes"
    )


def _describe(error: BaseException | None) -> str:
    """An error as one line for the other ranks' message."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


SINGLE = World()
"""The world of one process: every method does nothing."""


def init(
    device: str | torch.device | None = None,
    *,
    backend: str | None = None,
    timeout: float | None = None,
    environ: dict[str, str] | None = None,
) -> World:
    """Join the torchrun job this process belongs to; :data:`SINGLE` when it belongs to none.

    A process group already joined is kept (:func:`current`), whoever joined it.

    Args:
        device: the device training runs on; picks the backend (NCCL for CUDA, gloo otherwise)
            unless ``backend`` or ``$CHARSEQ_DIST_BACKEND`` names one.
        backend: the ``torch.distributed`` backend to use.
        timeout: seconds a collective waits for the other ranks before failing (torch's
            default, 30 minutes for gloo, if ``None``); the other ranks wait this long for rank
            0's evaluations and checkpoints.
        environ: the environment to read (``os.environ`` by default).

    Raises:
        DistributedError: a torchrun environment that is malformed, or whose backend this torch
            build lacks.
    """
    if dist.is_available() and dist.is_initialized():
        return current()  # joined already (by this function, or by the caller's own code)
    env = detect(environ)
    if env is None or env.world_size == 1:
        return SINGLE
    chosen = default_backend(device, backend)
    if not dist.is_available() or not dist.is_backend_available(chosen):
        raise DistributedError(f"this torch build has no {chosen!r} distributed backend")
    if chosen == "nccl" and torch.cuda.is_available():
        torch.cuda.set_device(env.local_rank)  # one GPU per process on each machine
    agent_store = (os.environ if environ is None else environ).get("TORCHELASTIC_USE_AGENT_STORE")
    _join(env, chosen, timeout, host_store=env.rank == 0 and agent_store != "True")
    return current(env.local_rank)


def _join(env: TorchrunEnv, backend: str, timeout: float | None, *, host_store: bool) -> None:
    """Join the process group through a store at the master's address (hosted by rank 0, or
    by torchrun's agent), kept for :func:`shutdown`, which runs at exit."""
    global _store
    wait = {} if timeout is None else {"timeout": timedelta(seconds=timeout)}
    _store = dist.TCPStore(
        env.master_addr, env.master_port, env.world_size, is_master=host_store, **wait
    )
    dist.init_process_group(backend, store=_store, rank=env.rank, world_size=env.world_size, **wait)
    atexit.register(shutdown)


_store: dist.TCPStore | None = None
"""The store the process group :func:`init` made was joined through."""


def shutdown() -> None:
    """Leave the process group :func:`init` joined, every rank together (it runs at exit).

    A gloo rank whose peer closes its connections first may abort (the transport's thread
    raises where nothing catches it), so the ranks first meet in the store (not a collective: a
    rank may leave while the others are in one), then each closes its connections, and none
    leaves the store until all have. A rank that does not come within a minute is not waited
    for: the job is over, and errors here are ignored.
    """
    global _store
    store, _store = _store, None
    if store is None or not dist.is_initialized():
        return
    size = dist.get_world_size()
    try:
        if _meet(store, "charseq/arrived", size):
            dist.destroy_process_group()
            _meet(store, "charseq/left", size)
    except (RuntimeError, dist.DistError):
        pass


def _meet(store: dist.TCPStore, key: str, size: int, seconds: float = 60) -> bool:
    """Count this rank in at ``key`` and wait until all ``size`` have come (``False`` if they
    have not within ``seconds``)."""
    store.add(key, 1)
    deadline = time.monotonic() + seconds
    while store.add(key, 0) < size:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def current(local_rank: int | None = None) -> World:
    """The world of the process group already joined, or :data:`SINGLE` when none is."""
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return SINGLE
    rank = dist.get_rank()
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = f"cuda:{local_rank}" if dist.get_backend() == "nccl" else "cpu"
    return World(rank, dist.get_world_size(), local_rank, device)


def local_device(device: str | torch.device | None = None) -> str | torch.device | None:
    """The device this rank of a torchrun job trains on: ``cuda:LOCAL_RANK`` where ``device``
    is ``None`` or ``"cuda"`` without an index and CUDA is available (one GPU per process on
    each machine); ``device`` itself otherwise, and outside torchrun."""
    env = detect()
    if env is None or env.world_size == 1 or not torch.cuda.is_available():
        return device
    if device is None or str(device) == "cuda":
        return torch.device("cuda", env.local_rank)
    return device


def shard_rows(batch_size: int, rank: int, size: int) -> slice:
    """The rows of a global batch of ``batch_size`` rows that rank ``rank`` of ``size`` trains on.

    Rank ``r`` of ``N`` takes rows ``r * B / N`` to ``(r + 1) * B / N``, so the ranks together
    train on exactly the batch one process would.

    Raises:
        DistributedError: ``batch_size`` is not a multiple of the world size.
    """
    if size < 1 or not 0 <= rank < size:
        raise DistributedError(f"rank {rank} is outside a world of {size}")
    if batch_size % size:
        lower, higher = batch_size - batch_size % size, batch_size + size - batch_size % size
        use = f"{lower} or {higher}" if lower else str(higher)
        raise DistributedError(
            f"train.batch_size={batch_size} is the global batch, shared out among the {size} "
            f"processes, so it must be a multiple of {size}; use {use}"
        )
    rows = batch_size // size
    return slice(rank * rows, (rank + 1) * rows)
