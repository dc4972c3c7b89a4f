"""Data-parallel training throughput: 1 and N processes, charseq against plain PyTorch DDP.

Each contender trains the char-rnn-sized model (embedding 64, 2 x 128 LSTM, a global batch of
50 streams of 50 characters, Adam, clipping at 5, truncated BPTT) for ``--steps`` timed steps
after ``--warmup`` steps, in fresh processes joined by a gloo (CPU) or NCCL (CUDA) process
group, as torchrun would start them (``torch.multiprocessing`` here, so that setting up is not
timed). The contenders, on the CPU:

- ``1x1``: one process, one torch thread (the unit of the scaling efficiency);
- ``1xN``: one process, N threads (what the N cores give without distributing);
- ``Nx1``: N processes of one thread each, DDP: each trains on 50 / N of the streams.

Each runs as ``charseq`` (a pipeline's :class:`~charseq.train.Trainer`, its whole loop: the
ranks' stop agreement, the loss averaged over ranks) and as ``torch`` (``nn.LSTM`` in a
hand-written loop wrapped in ``DistributedDataParallel``). Rounds alternate the contenders; the
median round is kept. Printed, one JSON line each: characters per second, ``vs_torch`` (charseq /
plain PyTorch, same layout) and, for ``Nx1``, the scaling efficiency (its characters per second
/ N x those of ``1x1``) and ``vs_threads`` (/ those of ``1xN``).

    python benchmarks/ddp_speed.py --data ../shared/data/tinyshakespeare.train.txt
    python benchmarks/ddp_speed.py --device cuda --nproc 2     # one GPU per process (NCCL)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import emit, machine  # noqa: E402

from charseq import Callback, Pipeline, distributed  # noqa: E402
from charseq.corpus import python_source_files, split_ids  # noqa: E402
from charseq.train import Trainer  # noqa: E402

LAYERS, HIDDEN, EMBEDDING, BATCH, SEQ_LEN = 2, 128, 64, 50, 50


def corpus(path: str | None) -> str:
    """The benchmark's text: ``--data``, or 2 MB of Python's standard library source."""
    if path:
        return Path(path).read_text(encoding="utf-8")
    text, size = [], 0
    for file in python_source_files():
        text.append(Path(file).read_text(encoding="utf-8", errors="replace"))
        size += len(text[-1])
        if size > 2_000_000:
            break
    return "".join(text)


# -- one rank ---------------------------------------------------------------------------------


def rank_main(rank: int, size: int, port: int, job: dict) -> None:
    """One rank of one contender: train, and rank 0 writes its characters per second."""
    torch.set_num_threads(job["threads"])
    env = {"RANK": str(rank), "WORLD_SIZE": str(size), "LOCAL_RANK": str(rank)}
    env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    device = job["device"] if job["device"] == "cpu" else f"cuda:{rank}"
    world = distributed.init(device, environ=env)
    try:
        train = charseq_rank if job["kind"] == "charseq" else torch_rank
        seconds = train(world, torch.device(device), job)
        if rank == 0:
            chars = job["steps"] * BATCH * SEQ_LEN
            Path(job["out"]).write_text(json.dumps(chars / seconds))
    finally:
        distributed.shutdown()


class Clock(Callback):
    """The seconds between the end of step ``start`` and the end of step ``stop``."""

    def __init__(self, start: int, stop: int, device: torch.device) -> None:
        self.start, self.stop, self.device = start, stop, device
        self.began = self.seconds = 0.0

    def on_step_end(self, trainer, step, metrics):
        if step in (self.start, self.stop) and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if step == self.start:
            self.began = time.perf_counter()
        elif step == self.stop:
            self.seconds = time.perf_counter() - self.began


def charseq_rank(world: distributed.World, device: torch.device, job: dict) -> float:
    spec = {
        "cell": {"name": "lstm", "hidden_size": HIDDEN, "num_layers": LAYERS},
        "model": {"embedding_size": EMBEDDING},
        "optimizer": {"name": "adam", "lr": 0.002},
        "train": {
            "batch_size": BATCH, "seq_len": SEQ_LEN, "steps": job["warmup"] + job["steps"],
            "eval_every": 0, "val_fraction": 0.0, "test_fraction": 0.0,
        },
    }  # fmt: skip
    pipe = Pipeline.from_spec(spec, device=device)
    text = Path(job["text"]).read_text(encoding="utf-8")
    pipe.tokenizer = pipe.tokenizer.fit(text)
    torch.manual_seed(0)
    pipe.model = pipe.build_model()
    splits = split_ids(np.asarray(pipe.tokenizer.encode(text)), 0.0, 0.0)
    clock = Clock(job["warmup"], job["warmup"] + job["steps"], device)
    trainer = Trainer(pipe, splits, callbacks=[clock], world=world)
    trainer.run()
    return clock.seconds


class PlainModel(nn.Module):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, EMBEDDING)
        self.rnn = nn.LSTM(EMBEDDING, HIDDEN, LAYERS, batch_first=True)
        self.head = nn.Linear(HIDDEN, vocab)

    def forward(self, x, hidden=None):
        out, hidden = self.rnn(self.embedding(x), hidden)
        return self.head(out), hidden


def torch_rank(world: distributed.World, device: torch.device, job: dict) -> float:
    text = Path(job["text"]).read_text(encoding="utf-8")
    vocab = sorted(set(text))
    ids = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    ids = np.searchsorted(np.array([ord(c) for c in vocab], dtype=np.uint32), ids)
    rows = BATCH // world.size  # this rank's streams of the global batch
    stream = (len(ids) - 1) // BATCH
    starts = (np.arange(BATCH) * stream)[world.rank * rows : (world.rank + 1) * rows]
    torch.manual_seed(0)
    model = PlainModel(len(vocab)).to(device)
    forward = model
    if world.distributed:
        ids_ = [device.index] if device.type == "cuda" else None
        forward = DistributedDataParallel(model, device_ids=ids_)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.002)
    hidden, began = None, 0.0
    for step in range(job["warmup"] + job["steps"]):
        if step == job["warmup"]:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            began = time.perf_counter()
        at = (step * SEQ_LEN) % (stream - SEQ_LEN)
        window = np.stack([ids[s + at : s + at + SEQ_LEN + 1] for s in starts])
        batch = torch.from_numpy(window.astype(np.int64)).to(device)  # (B / N, T + 1)
        if hidden is not None:
            hidden = tuple(h.detach() for h in hidden)
        logits, hidden = forward(batch[:, :-1], hidden)
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - began


# -- the contenders ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chars_per_second(kind: str, procs: int, threads: int, args, text: Path, out: Path) -> float:
    """One round of one contender, in fresh processes."""
    job = {
        "kind": kind, "threads": threads, "device": args.device, "text": str(text),
        "steps": args.steps, "warmup": args.warmup, "out": str(out),
    }  # fmt: skip
    mp.spawn(rank_main, args=(procs, free_port(), job), nprocs=procs, join=True)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="a text file (default: 2 MB of Python's own source)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--nproc", type=int, default=2, help="processes (and threads) N")
    parser.add_argument("--steps", type=int, default=150, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is kept")
    args = parser.parse_args(argv)
    n = args.nproc
    if BATCH % n:
        parser.error(f"--nproc must divide the batch of {BATCH}")
    layouts = {"1x1": (1, 1), f"{n}x1": (n, 1)}
    if args.device == "cpu":
        layouts[f"1x{n}"] = (1, n)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp, "corpus.txt")
        text.write_text(corpus(args.data), encoding="utf-8")
        rates: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for name, (procs, threads) in layouts.items():
                for kind in ("torch", "charseq"):
                    rate = chars_per_second(kind, procs, threads, args, text, Path(tmp, "r"))
                    rates.setdefault((kind, name), []).append(rate)
    median = {key: statistics.median(values) for key, values in rates.items()}
    stamp = machine(torch.device(args.device))
    stamp["device"] = stamp["device"].split(",")[0]  # threads are per contender here
    for (kind, name), rate in median.items():
        record = {
            **stamp, "contender": kind, "layout": name, "chars_per_s": round(rate),
            "vs_torch": round(rate / median[("torch", name)], 3),
        }  # fmt: skip
        if name == f"{n}x1":
            record["efficiency"] = round(rate / (n * median[(kind, "1x1")]), 3)
            if (kind, f"1x{n}") in median:
                record["vs_threads"] = round(rate / median[(kind, f"1x{n}")], 3)
        records.append(record)
        emit(record)
    return records


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # each contender sets its own thread count
    main()
