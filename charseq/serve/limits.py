"""Keeping a server up under load: a bounded number of generations at once, a bounded queue
behind them, and refusals beyond that.

Generating text is CPU (or GPU) work that takes from milliseconds to seconds; it runs in worker
threads, never on the event loop, so the server keeps answering while it runs. At most
``concurrency`` requests hold a worker at once; up to ``queue`` more wait for one, in arrival
order; a request that finds both full is refused at once with 429 and ``Retry-After`` instead
of piling up in memory. A slot is given back when its worker's call has really ended, not when
the client goes away, so a burst of disconnecting clients cannot start more work than the limit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from charseq.serve.errors import ApiError

__all__ = ["Limiter", "MAX_BODY_BYTES"]

T = TypeVar("T")

MAX_BODY_BYTES = 1 << 20
"""The largest request body read (1 MiB); a larger one is refused with 413."""

RETRY_AFTER_S = 1
"""What ``Retry-After`` says when the queue is full or the server is stopping, in seconds."""


class Limiter:
    """At most ``concurrency`` calls in worker threads at once, ``queue`` more waiting.

    Use from the event loop: ``await limiter.acquire()`` (it raises an :class:`ApiError` 429
    when the queue is full, 503 when the server is stopping), then :meth:`start` the call,
    which gives the slot back when the call returns in its thread.
    """

    def __init__(self, concurrency: int = 2, queue: int = 16) -> None:
        if concurrency < 1 or queue < 0:
            raise ValueError(f"concurrency >= 1 and queue >= 0, got {concurrency}, {queue}")
        self.concurrency = concurrency
        self.queue = queue
        self.running = 0
        self.waiting = 0
        self.closing = False
        self._slots: asyncio.Semaphore | None = None  # made in the event loop that uses it
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(concurrency, "charseq-serve")

    def close(self) -> None:
        """Refuse new work (503) from now on; work already admitted finishes."""
        self.closing = True

    def shutdown(self) -> None:
        """Stop the worker threads once their calls end."""
        self.closing = True
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def acquire(self) -> None:
        """Wait for a slot, or refuse: 503 while stopping, 429 when ``queue`` wait already."""
        if self.closing:
            raise ApiError(
                503,
                "the server is shutting down; try again later",
                type="server_error",
                code="shutting_down",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
            self._loop = asyncio.get_running_loop()
        if self.running >= self.concurrency and self.waiting >= self.queue:
            raise ApiError(
                429,
                f"busy: {self.running} generations are running and {self.waiting} waiting (the "
                f"server's --concurrency {self.concurrency} and --queue {self.queue}); retry "
                "after the Retry-After seconds",
                type="rate_limit_error",
                code="queue_full",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1

    def start(self, call: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``call(*args)`` in a worker thread (after :meth:`acquire`); the slot is given
        back when it returns or raises, whatever became of the request that started it."""
        assert self._loop is not None, "acquire() first"
        loop = self._loop
        context = contextvars.copy_context()

        def run() -> T:
            try:
                return context.run(call, *args)
            finally:
                with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to free
                    loop.call_soon_threadsafe(self._release)

        try:
            return loop.run_in_executor(self._pool, run)
        except RuntimeError:  # the pool is shut down
            self._release()
            raise

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """:meth:`acquire`, then run ``call(*args)`` in a worker thread and return its result."""
        await self.acquire()
        return await self.start(functools.partial(call, *args))

    def _release(self) -> None:
        self.running -= 1
        assert self._slots is not None
        self._slots.release()
