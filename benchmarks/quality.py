"""Quality at a fixed time budget: validation nats/char and BPC on nanoGPT's shakespeare_char split.

The text's first 90% trains and its last 10% validates (as karpathy/nanoGPT
data/shakespeare_char/prepare.py splits it); the vocabulary is fitted on the whole text, as
there. Training stops at the time budget (evaluations included); the reported number is the
best checkpoint's loss on the whole validation split, evaluated exactly (one stream, state
carried, every character predicted from all before it). Prints one JSON line.

    python benchmarks/quality.py --data ../shared/data/tinyshakespeare.txt \\
        --preset shakespeare-cpu --seconds 300 --device cpu
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime

import torch

from charseq import Pipeline, PipelineSpec
from charseq.corpus import read_text, split_ids
from charseq.scoring import evaluate_ids


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="text file (e.g. tinyshakespeare.txt)")
    parser.add_argument("--preset", default="shakespeare-cpu", help="charseq preset to train")
    parser.add_argument("--spec", help="spec file instead of a preset")
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec value (JSON value)",
    )
    parser.add_argument("--seconds", type=float, default=300.0, help="time budget")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    spec = PipelineSpec.from_file(args.spec) if args.spec else PipelineSpec.from_preset(args.preset)
    # The split and the budget are fixed; everything else is the preset's (or --set's).
    changes = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.settings)}
    changes.update(
        {
            "train.val_fraction": 0.1,
            "train.test_fraction": 0.0,
            "train.max_seconds": args.seconds,
        }
    )
    spec = spec.override(changes)
    text = read_text(args.data)
    pipe = Pipeline.from_spec(spec, device=args.device)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        pipe.fit(text, out=out)
        wall = time.perf_counter() - started
        directory = f"{out}/best" if pipe.last_run.best_val_bpc else out
        best = Pipeline.load(directory, device=args.device)
    ids = torch.as_tensor(best.tokenizer.encode(text))
    val = split_ids(ids.numpy(), val=0.1, test=0.0).val
    scores = evaluate_ids(best.model, val, batch_size=1, seq_len=1024, warmup=0, device=args.device)
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "data": args.data,
        "val_chars": int(scores["tokens"]),
        "val_nats": round(scores["nats"], 4),
        "val_bpc": round(scores["bpc"], 4),
        "best_step": best.steps_trained,
        "steps": pipe.result.step,
        "budget_s": args.seconds,
        "wall_s": round(wall, 1),
        "params": sum(p.numel() for p in pipe.model.parameters()),
        "device": _device_name(args.device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "preset": None if args.spec else args.preset,
        "overrides": args.settings,
        "command": " ".join(["python", "benchmarks/quality.py", *(argv or sys.argv[1:])]),
    }
    print(json.dumps(result))
    return result


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} ({device})"


if __name__ == "__main__":
    main()
