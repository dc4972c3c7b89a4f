"""How cost grows with the corpus: preparation and training time per character, and peak memory.

For each corpus size (default 1 MB, 10 MB, 100 MB, 1 GB) a corpus file is made by repeating a
source text (``--data``, or a generated one), and a fresh child process

1. prepares it as ``Pipeline.fit(files=...)`` does: hashes and streams the file, fits the
   ``char`` tokenizer, encodes it into the memory-mapped id cache (timed: ``prepare_s``);
2. trains ``--steps`` steps of a 2x128 LSTM on batches streamed from the memory-mapped ids,
   spread over the whole corpus (timed: ``train_chars_per_s``).

Each child prints one JSON line, with its peak resident memory above what it held after
importing torch and charseq (``peak_mib``), and how much of what it holds at the end is its own
(``anon_mib``) and how much is pages of the memory-mapped corpus (``file_mib``, page cache the
OS reclaims under pressure). Flat ``prepare_ns_per_char`` and
``train_chars_per_s`` and bounded ``anon_mib`` are what a streamed corpus should show.

    python benchmarks/scaling.py --data ../shared/data/tinyshakespeare.txt
    python benchmarks/scaling.py --sizes 1e6 1e7            # a quicker look
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import PeakMemory, emit, machine  # noqa: E402


def make_corpus(path: Path, size: int, source: str) -> None:
    """``size`` bytes of ``source`` repeated (cut at a character boundary), written to ``path``."""
    block = source.encode("utf-8")
    with path.open("wb") as out:
        written = 0
        while written + len(block) <= size:
            out.write(block)
            written += len(block)
        tail = block[: size - written].decode("utf-8", "ignore").encode("utf-8")
        out.write(tail)


def generated_text(chars: int = 1 << 20) -> str:
    """A deterministic English-like text: words drawn from a small vocabulary, in lines."""
    import random

    words = ["the", "of", "and", "to", "in", "is", "it", "that", "was", "for", "on", "are"]
    rng = random.Random(0)
    lines, total = [], 0
    while total < chars:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(4, 12))).capitalize() + "."
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines) + "\n"


def child(path: Path, steps: int, cache: Path, threads: int = 0) -> dict:
    """Prepare ``path`` and train on it; runs in a fresh process."""
    import numpy as np
    import torch

    if threads:
        torch.set_num_threads(threads)
    from charseq import Pipeline
    from charseq.batches import StreamBatches
    from charseq.corpus import find_sources, prepare_corpus
    from charseq.train import Trainer

    torch.manual_seed(0)
    device = torch.device("cpu")
    before = _resident()
    with PeakMemory(device) as peak:
        spec = {"cell": {"name": "lstm"}, "train": {"batch_size": 50, "seq_len": 50}}
        pipe = Pipeline.from_spec(spec, device=device)
        start = time.perf_counter()
        corpus = prepare_corpus(find_sources([path]), pipe.tokenizer, cache)
        prepare_s = time.perf_counter() - start
        splits = corpus.split(0.0, 0.0)
        pipe.model = pipe.build_model()
        trainer = Trainer(pipe, splits)
        batches = StreamBatches(splits.train, 50, 50)
        # Jump the cursor through the corpus so the steps read from all over it.
        stride = max(1, batches.steps_per_epoch // max(steps, 1)) if steps else 1
        trainer.train_step(batches.next())  # warm up
        start = time.perf_counter()
        chars = 0
        for i in range(steps):
            batches.load_state_dict({**batches.state_dict(), "position": (i * stride)})
            batch = batches.next()
            trainer.train_step(batch)
            chars += batch.x.numel()
        train_s = time.perf_counter() - start
        tokens = int(np.asarray(corpus.ids).size)
        after = _resident()
    size = path.stat().st_size
    return {
        "benchmark": "scaling",
        "corpus_bytes": size,
        "tokens": tokens,
        "prepare_s": round(prepare_s, 3),
        "prepare_ns_per_char": round(prepare_s / tokens * 1e9, 2),
        "train_steps": steps,
        "train_chars_per_s": round(chars / train_s) if steps else None,
        "peak_mib": None if peak.mib is None else round(peak.mib, 1),
        # Resident memory at the end, above the start: anonymous (the process's own) and
        # file-backed (pages of the memory-mapped ids the batches touched; the OS reclaims them).
        "anon_mib": _grown(before, after, "RssAnon"),
        "file_mib": _grown(before, after, "RssFile"),
        **machine(device),
    }


def _resident() -> dict[str, int]:
    """RssAnon and RssFile in kB (Linux), else an empty dict."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return {}
    found = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            found[key] = int(value.split()[0])
    return found


def _grown(before: dict[str, int], after: dict[str, int], key: str) -> float | None:
    if key not in before or key not in after:
        return None
    return round((after[key] - before[key]) / 1024, 1)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="source text to repeat (default: a generated text)")
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e6, 1e7, 1e8, 1e9])
    parser.add_argument("--steps", type=int, default=40, help="training steps per size")
    parser.add_argument("--workdir", help="where the corpora go (default: a temporary folder)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument(
        "--child", nargs=4, metavar=("PATH", "STEPS", "CACHE", "THREADS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        path, steps, cache, threads = args.child
        print(json.dumps(child(Path(path), int(steps), Path(cache), int(threads))))
        return []
    source = Path(args.data).read_text("utf-8") if args.data else generated_text()
    records = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as work:
        for size in args.sizes:
            path = Path(work) / f"corpus-{int(size)}.txt"
            make_corpus(path, int(size), source)
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    str(path),
                    str(args.steps),
                    str(Path(work, "cache")),
                    str(args.threads),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            record = json.loads(done.stdout.strip().splitlines()[-1])
            emit(record)
            records.append(record)
            path.unlink()
            for cached in Path(work, "cache").glob("*"):
                cached.unlink()
    return records


if __name__ == "__main__":
    main()
