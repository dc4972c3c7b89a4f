"""What the ``charseq serve`` tests share: the extra's check, a tiny trained run, a live server
on a free loopback port, and reading server-sent events."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from charseq import Pipeline
from tests._helpers import SMALL, TEXT

MISSING = "charseq serve's tests need the serve extra and httpx: pip install -e '.[serve,testing]'"

starlette = pytest.importorskip("starlette", reason=MISSING)
uvicorn = pytest.importorskip("uvicorn", reason=MISSING)
httpx = pytest.importorskip("httpx", reason=MISSING)
TestClient = pytest.importorskip("starlette.testclient", reason=MISSING).TestClient


def train_run(directory: Path) -> Path:
    """A run directory with a tiny model trained on :data:`~tests._helpers.TEXT` (a second)."""
    Pipeline.from_spec(SMALL).fit(TEXT, out=directory)
    return directory


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn in a thread on 127.0.0.1; yields its base URL, then stops it."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def events(body: str) -> list[Any]:
    """The ``data:`` payloads of a server-sent events body: JSON objects, and ``"[DONE]"``."""
    out = []
    for block in body.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


class CountingStream:
    """Wraps ``pipe.stream`` to count the pieces taken from each generation and see it closed."""

    def __init__(self, pipe: Pipeline) -> None:
        self.original = pipe.stream
        self.pulled = 0
        self.closed = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Iterator[str]:
        inner = self.original(*args, **kwargs)  # checked here, as Pipeline.stream does

        def pieces() -> Iterator[str]:
            try:
                for piece in inner:
                    self.pulled += 1
                    yield piece
            finally:
                inner.close()
                self.closed.set()

        return pieces()
