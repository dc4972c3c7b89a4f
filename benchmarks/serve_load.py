"""Load on ``charseq serve``: many streaming clients at once against a live server.

Starts ``charseq serve RUN`` in a subprocess on a free loopback port, then for each level of
concurrency N (``--clients 1 8 32 128``) opens N streaming completions at once
(``POST /v1/completions`` with ``stream: true``) and measures, per level:

- time to the first character, p50 and p99 over the clients that were served;
- characters per second, in total (all characters / the level's wall time) and per client
  (each client's characters / its own time from request to ``[DONE]``);
- errors: refusals with 429 (expected once N passes ``--concurrency + --queue``) and anything
  else (which should never happen);
- the server's resident memory (``VmRSS`` of its process) before the first level and after each.

It counts and times; it asserts nothing. Numbers depend on the machine: run it on a quiet one.

    python benchmarks/serve_load.py runs/demo
    python benchmarks/serve_load.py runs/demo --clients 1 8 32 128 --tokens 200 \\
        --concurrency 2 --queue 16

Without a run (``--train``) it trains a small GRU on Python's own source first (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _bench import emit, machine  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid`` in MB (Linux: ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(run: str, port: int, args: argparse.Namespace) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "charseq", "serve", run, "--port", str(port),
        "--concurrency", str(args.concurrency), "--queue", str(args.queue), "--device", "cpu",
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read().decode()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not answer /healthz within 120 s")


async def one_client(client: httpx.AsyncClient, body: dict) -> dict:
    """One streamed completion: when its first character came, how many, and how it ended."""
    start = time.perf_counter()
    first, chars = None, 0
    async with client.stream("POST", "/v1/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return {"status": response.status_code, "chars": 0}
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: ") :])
            if "error" in chunk:
                return {"status": "stream-error", "chars": chars}
            text = chunk["choices"][0]["text"]
            if text and first is None:
                first = time.perf_counter() - start
            chars += len(text)
    return {"status": 200, "chars": chars, "first": first, "seconds": time.perf_counter() - start}


async def level(port: int, clients: int, body: dict) -> tuple[list[dict], float]:
    limits = httpx.Limits(max_connections=clients + 4)
    timeout = httpx.Timeout(600.0)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=timeout
    ) as client:
        start = time.perf_counter()
        results = await asyncio.gather(*(one_client(client, body) for _ in range(clients)))
        return list(results), time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(clients: int, results: list[dict], wall: float, rss: float) -> dict:
    served = [r for r in results if r["status"] == 200]
    firsts = [r["first"] for r in served if r.get("first") is not None]
    per_client = [r["chars"] / r["seconds"] for r in served if r["seconds"] > 0]
    return {
        "clients": clients,
        "served": len(served),
        "refused_429": sum(r["status"] == 429 for r in results),
        "other_errors": sum(r["status"] not in (200, 429) for r in results),
        "first_char_p50_s": round(percentile(firsts, 0.5), 3),
        "first_char_p99_s": round(percentile(firsts, 0.99), 3),
        "chars_per_s_total": round(sum(r["chars"] for r in served) / wall, 1),
        "chars_per_s_per_client_median": round(statistics.median(per_client), 1)
        if per_client
        else None,
        "wall_s": round(wall, 2),
        "server_rss_mb": round(rss, 1),
    }


def train_run(directory: Path) -> str:
    out = directory / "serve-load"
    subprocess.run(
        [sys.executable, "-m", "charseq", "train", "--out", str(out), "--no-progress",
         "--set", "cell.name=gru", "--set", "cell.hidden_size=128", "--set", "train.steps=300"],
        check=True,
    )  # fmt: skip
    return str(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", help="run directory or checkpoint to serve")
    parser.add_argument("--train", action="store_true", help="train a small run first")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--tokens", type=int, default=200, help="max_tokens of each request")
    parser.add_argument("--concurrency", type=int, default=2, help="the server's --concurrency")
    parser.add_argument("--queue", type=int, default=16, help="the server's --queue")
    args = parser.parse_args()
    if not args.run and not args.train:
        parser.error("name a run to serve, or pass --train")
    with tempfile.TemporaryDirectory() as scratch:
        run = args.run or train_run(Path(scratch))
        port = free_port()
        server = start_server(run, port, args)
        try:
            name = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"][0]["id"]
            body = {
                "model": name, "prompt": "def ", "max_tokens": args.tokens, "stream": True,
                "temperature": 0.8, "seed": 0,
            }  # fmt: skip
            settings = {"concurrency": args.concurrency, "queue": args.queue, "tokens": args.tokens}
            emit({**machine(torch.device("cpu")), **settings, "server_rss_mb": rss_mb(server.pid)})
            for clients in args.clients:
                results, wall = asyncio.run(level(port, clients, body))
                emit(summarise(clients, results, wall, rss_mb(server.pid)))
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
