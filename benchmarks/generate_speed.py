"""Generation speed: charseq against a plain PyTorch sampling loop, plus beam and streaming costs.

One untrained model (speed does not depend on the weights): embedding -> LSTM layers -> linear.
Contenders, timed round by round in one process:

- ``torch``: the plain eager loop, batch 1: ``nn.LSTM`` on one character at a time, softmax
  with temperature, ``torch.multinomial``, ``.item()``;
- ``charseq``: ``Pipeline.generate`` with the temperature sampler, batch 1;
- ``charseq-stream``: the same through ``Pipeline.stream``, every piece consumed;
- ``charseq-greedy`` and ``charseq-beam8``: greedy and 8-beam search, batch 1, whose ratio is
  the cost per character of beam search;
- ``torch-batch`` and ``charseq-batch``: ``--batch`` sequences at once (characters of all
  sequences counted).

Prints one JSON line per contender with characters per second and ratios.

    python benchmarks/generate_speed.py                      # CPU, 2x128
    python benchmarks/generate_speed.py --device cuda --layers 3 --hidden 512
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import add_common_arguments, emit, machine, ratio, setup, time_rounds  # noqa: E402

from charseq import Pipeline  # noqa: E402

VOCAB = 65
EMBEDDING = 64
TEMPERATURE = 0.8


class PlainModel(nn.Module):
    def __init__(self, layers: int, hidden: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, EMBEDDING)
        self.rnn = nn.LSTM(EMBEDDING, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, VOCAB)

    def forward(self, ids, hidden=None):
        out, hidden = self.rnn(self.embedding(ids), hidden)  # (B, T, H)
        return self.head(out), hidden  # (B, T, V)


def plain_sampler(model: PlainModel, device, length: int, batch: int = 1):
    """The eager loop a PyTorch user writes: one character in, one sampled character out."""

    @torch.no_grad()
    def run() -> int:
        ids = torch.zeros(batch, 1, dtype=torch.long, device=device)
        hidden = None
        out = []
        for _ in range(length):
            logits, hidden = model(ids, hidden)  # (B, 1, V)
            probs = F.softmax(logits[:, -1] / TEMPERATURE, dim=-1)
            ids = torch.multinomial(probs, 1)  # (B, 1)
            out.append(ids.item() if batch == 1 else ids)
        if batch > 1:
            torch.cat(out, dim=1).tolist()
        return length * batch

    return run


def charseq_sampler(pipe: Pipeline, length: int, sampler, *, batch: int = 1, stream=False):
    def run() -> int:
        if stream:
            for _piece in pipe.stream("a", length, sampler=sampler, seed=0):
                pass
        else:
            pipe.generate("a", length, sampler=sampler, seed=0, num_samples=batch)
        return length * batch

    return run


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--length", type=int, default=500, help="characters per sequence")
    parser.add_argument("--batch", type=int, default=64, help="sequences of the batched run")
    args = parser.parse_args(argv)
    device = setup(args)

    plain = PlainModel(args.layers, args.hidden).to(device).eval()
    spec = {
        "cell": {"name": "lstm", "hidden_size": args.hidden, "num_layers": args.layers},
        "model": {"embedding_size": EMBEDDING},
    }
    pipe = Pipeline.from_spec(spec, device=device)
    pipe.tokenizer.fit("".join(chr(33 + i) for i in range(VOCAB - 1)) + "a")
    pipe.model = pipe.build_model()
    temperature = {"name": "temperature", "temperature": TEMPERATURE}
    n = args.length
    contenders = {
        "torch": plain_sampler(plain, device, n),
        "charseq": charseq_sampler(pipe, n, temperature),
        "charseq-stream": charseq_sampler(pipe, n, temperature, stream=True),
        "charseq-greedy": charseq_sampler(pipe, n, "greedy"),
        "charseq-beam8": charseq_sampler(pipe, n, {"name": "beam", "num_beams": 8}),
        "torch-batch": plain_sampler(plain, device, n, batch=args.batch),
        "charseq-batch": charseq_sampler(pipe, n, temperature, batch=args.batch),
    }
    for run in contenders.values():  # warm up
        run()
    rates = time_rounds(contenders, device, args.rounds)
    compare = {
        "charseq": ("vs_torch", "torch"),
        "charseq-stream": ("vs_generate", "charseq"),
        "charseq-beam8": ("vs_greedy", "charseq-greedy"),
        "charseq-batch": ("vs_torch", "torch-batch"),
    }
    records = []
    size = {"layers": args.layers, "hidden": args.hidden, "length": n}
    for name, rate in rates.items():
        batch = args.batch if name.endswith("batch") else 1
        record = {"benchmark": "generate", **size, "batch": batch, "contender": name}
        record["chars_per_s"] = round(rate)
        if name in compare:
            key, other = compare[name]
            record[key] = ratio(rate, rates[other])
        record.update(machine(device))
        emit(record)
        records.append(record)
    return records


if __name__ == "__main__":
    main()
