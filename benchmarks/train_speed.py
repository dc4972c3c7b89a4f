"""Training throughput: charseq against the same model and loop written in plain PyTorch.

The model is embedding -> stacked recurrent layers -> linear head, trained with Adam, gradient
norm clipped at 5, truncated backpropagation through time (the hidden state carried and
detached between batches). Per configuration and cell it times, in one process, round by round:

- ``torch``: plain PyTorch, ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` (cuDNN on a GPU, oneDNN or
  native kernels on a CPU) and a hand-written loop;
- ``charseq``: a charseq pipeline with the built-in cell, one ``Trainer.train_step`` per batch;
- ``plugin`` (LSTM only): charseq with ``step-lstm``, an LSTM written as one ``step`` of plain
  torch ops, the way a plugin author writes a cell (``benchmarks/step_cells.py``);
- ``plugin-compiled`` (with ``--compile``): the same with ``train.compile = true``
  (``compile_s``: the first round, which compiles).

With ``--bf16`` (CUDA) each of ``torch`` and ``charseq`` also runs under bf16 autocast
(``torch-bf16``, ``charseq-bf16``: ``vs_fp32`` is the ratio to the same program in fp32 / TF32).
It prints one JSON line per contender: characters per second, peak memory (MiB, the median of
three rounds) and the ratios
to plain PyTorch (``vs_torch``) and, for the plugin, to the built-in cell (``vs_builtin``).

    python benchmarks/train_speed.py                     # CPU: the char-rnn size, 2x128
    python benchmarks/train_speed.py --device cuda       # GPU: 2x128, 3x512, 3x1024
    python benchmarks/train_speed.py --device cuda --bf16 --config 3x512 --config 3x1024
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import step_cells  # noqa: E402
from _bench import (  # noqa: E402
    PeakMemory,
    add_common_arguments,
    emit,
    machine,
    ratio,
    rounded,
    setup,
    time_rounds,
)

from charseq import Pipeline  # noqa: E402
from charseq.batches import Batch  # noqa: E402
from charseq.registry import Registry  # noqa: E402
from charseq.train import Trainer  # noqa: E402

VOCAB = 65
EMBEDDING = 64
CONFIGS = {
    # name: (layers, hidden, batch, seq_len)
    "char-rnn": (2, 128, 50, 50),
    "3x512": (3, 512, 64, 256),
    "3x1024": (3, 1024, 128, 256),
    "shakespeare": (3, 512, 128, 128),
    "tiny": (1, 16, 4, 8),
}
TORCH_RNNS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class PlainModel(nn.Module):
    """The plain PyTorch twin of charseq's model."""

    def __init__(self, cell: str, layers: int, hidden: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, EMBEDDING)
        self.rnn = TORCH_RNNS[cell](EMBEDDING, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, VOCAB)

    def forward(self, ids, hidden=None):
        out, hidden = self.rnn(self.embedding(ids), hidden)  # (B, T, H)
        return self.head(out), hidden  # (B, T, V)


def plain_trainer(cell, layers, hidden, device, batches, precision="fp32"):
    """A round of the plain PyTorch loop: returns a function training on ``batches``."""
    model = PlainModel(cell, layers, hidden).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    state = {"hidden": None}

    def detach(hidden):
        if hidden is None:
            return None
        return tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()

    def run() -> int:
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            with autocast:
                logits, hidden = model(x, detach(state["hidden"]))
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            state["hidden"] = hidden
            loss.item()
        return sum(x.numel() for x, _ in batches)

    return run


def charseq_trainer(
    cell, layers, hidden, device, batches, registry, precision="fp32", compile=False
):
    """A round of charseq's training step with ``cell``: returns a function like the above."""
    batch_size, seq_len = batches[0][0].shape
    spec = {
        "cell": {"name": cell, "hidden_size": hidden, "num_layers": layers},
        "model": {"embedding_size": EMBEDDING},
        "optimizer": {"name": "adam", "lr": 2e-3},
        "train": {
            "batch_size": batch_size,
            "seq_len": seq_len,
            "grad_clip": 5.0,
            "precision": precision,
            "compile": compile,
        },
    }
    pipe = Pipeline.from_spec(spec, registry=registry, device=device)
    pipe.tokenizer.fit("".join(chr(33 + i) for i in range(VOCAB)))
    pipe.model = pipe.build_model()
    ids = np.zeros(batch_size * seq_len * 4, dtype=np.int64)  # only sizes the batch cursor
    trainer = Trainer(pipe, SimpleNamespace(train=ids, val=ids[:0], bounds=[]))

    def run() -> int:
        for x, y in batches:
            trainer.train_step(Batch(x, y, reset=False))
        return sum(x.numel() for x, _ in batches)

    return run


def make_batches(batch: int, seq_len: int, count: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randint(0, VOCAB, (batch, seq_len), generator=generator),
            torch.randint(0, VOCAB, (batch, seq_len), generator=generator),
        )
        for _ in range(count)
    ]


def measure(config: str, cell: str, device, args, registry) -> list[dict]:
    layers, hidden, batch, seq_len = CONFIGS[config]
    batches = make_batches(batch, seq_len, args.steps)
    contenders = {
        "torch": plain_trainer(cell, layers, hidden, device, batches),
        "charseq": charseq_trainer(cell, layers, hidden, device, batches, registry),
    }
    if cell == "lstm" and args.plugin:
        contenders["plugin"] = charseq_trainer(
            "step-lstm", layers, hidden, device, batches, registry
        )
    if cell == "lstm" and args.plugin and args.compile:
        contenders["plugin-compiled"] = charseq_trainer(
            "step-lstm", layers, hidden, device, batches, registry, compile=True
        )
    if args.bf16:
        contenders["torch-bf16"] = plain_trainer(cell, layers, hidden, device, batches, "bf16")
        contenders["charseq-bf16"] = charseq_trainer(
            cell, layers, hidden, device, batches, registry, "bf16"
        )
    first_round = {}
    for name, run in contenders.items():  # warm up: lazy init, kernel choice, compilation
        start = time.perf_counter()
        run()
        first_round[name] = time.perf_counter() - start
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(3):  # the median of three rounds: one round's peak depends on the allocator
        for name, run in contenders.items():
            with PeakMemory(device) as peak:
                run()
            if peak.mib is not None:
                samples[name].append(peak.mib)
    peaks = {name: statistics.median(s) if s else None for name, s in samples.items()}
    rates = time_rounds(contenders, device, args.rounds)
    size = {"layers": layers, "hidden": hidden, "batch": batch, "seq_len": seq_len}
    records = []
    for name, rate in rates.items():
        record = {
            "benchmark": "train",
            "config": config,
            **size,
            "cell": "step-lstm" if name.startswith("plugin") else cell,
            "precision": "bf16" if name.endswith("-bf16") else "fp32",
            "contender": name,
            "chars_per_s": round(rate),
            "peak_mib": rounded(peaks[name], 1),
            "vs_torch": ratio(rate, rates["torch"]),
        }
        if peaks[name] is not None and peaks["torch"]:
            record["memory_vs_torch"] = ratio(peaks[name], peaks["torch"])
        if name.startswith("plugin"):
            record["vs_builtin"] = ratio(rate, rates["charseq"])
        if name == "plugin-compiled":
            record["compile_s"] = round(first_round[name], 1)  # the first round, compiling
        if name.endswith("-bf16"):  # bf16 autocast against the same contender in fp32 / TF32
            record["vs_fp32"] = ratio(rate, rates[name.removesuffix("-bf16")])
        records.append({**record, **machine(device), "steps_per_round": args.steps})
    return records


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--config", action="append", choices=sorted(CONFIGS), help="repeatable")
    parser.add_argument("--cell", action="append", choices=sorted(TORCH_RNNS), help="repeatable")
    parser.add_argument("--no-plugin", dest="plugin", action="store_false")
    parser.add_argument("--bf16", action="store_true", help="add bf16 autocast contenders (CUDA)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="add the plugin cell with train.compile (compiling takes minutes on a CPU)",
    )
    parser.add_argument("--steps", type=int, default=10, help="training steps per round")
    args = parser.parse_args(argv)
    device = setup(args)
    if args.bf16 and device.type != "cuda":
        parser.error("--bf16 needs --device cuda (charseq's bf16 training is CUDA-only)")
    if args.config is None:
        args.config = ["char-rnn"] if device.type == "cpu" else ["char-rnn", "3x512", "3x1024"]
    registry = Registry.load()
    registry.register(step_cells, "charseq-benchmarks")
    records = []
    for config in args.config:
        for cell in args.cell or ["lstm", "gru", "rnn"]:
            for record in measure(config, cell, device, args, registry):
                emit(record)
                records.append(record)
    return records


if __name__ == "__main__":
    main()
