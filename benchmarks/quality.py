"""Quality at a fixed time budget: validation nats/char and BPC on nanoGPT's shakespeare_char split.

The text's first 90% trains and its last 10% validates (as karpathy/nanoGPT
data/shakespeare_char/prepare.py splits it); the vocabulary is fitted on the whole text, as
there. Training stops at the time budget (evaluations included); the reported number is the
best checkpoint's loss on the whole validation split, evaluated exactly (one stream, state
carried, every character predicted from all before it). With ``--dynamic METHOD`` (repeatable:
``rms``, ``sgd``) the best checkpoint is also evaluated with dynamic evaluation
(:mod:`charseq.dynamic_eval`, its default options; the rms rule's statistics from the training
part), after the budget: ``val_nats_dynamic_rms`` etc. beside the static numbers. Prints one
JSON line.

    python benchmarks/quality.py --data ../shared/data/tinyshakespeare.txt \\
        --preset shakespeare-cpu --seconds 300 --device cpu --dynamic rms --dynamic sgd
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

import attrs
import torch
from _bench import add_set_option, spec_changes

from charseq import Pipeline, PipelineSpec
from charseq.corpus import read_text, split_ids
from charseq.dynamic_eval import METHODS, DynamicEvalOptions, dynamic_evaluate_ids
from charseq.scoring import evaluate_ids


@attrs.frozen
class Trained:
    """A spec trained to a time budget on a text's first 90%, its best checkpoint evaluated on
    the last 10%."""

    pipe: Pipeline  # as training left it
    best: Pipeline  # the best checkpoint by validation BPC
    splits: Any  # the text's ids, split 90/10 (charseq.corpus.split_ids)
    scores: dict  # evaluate_ids on the whole validation split
    wall: float  # seconds of training, evaluations included

    def record(self, data: str, seconds: float) -> dict:
        """The JSON fields every budget benchmark reports."""
        return {
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "data": data,
            "val_chars": int(self.scores["tokens"]),
            "val_nats": round(self.scores["nats"], 4),
            "val_bpc": round(self.scores["bpc"], 4),
            "best_step": self.best.steps_trained,
            "steps": self.pipe.last_run.step,
            "budget_s": seconds,
            "wall_s": round(self.wall, 1),
            "params": sum(p.numel() for p in self.pipe.model.parameters()),
        }


    def dynamic_record(self, method: str) -> dict:
        """The best checkpoint scored on the validation split by dynamic evaluation with
        ``method`` at its defaults (the rms rule's statistics from the training part)."""
        started = time.perf_counter()
        options = DynamicEvalOptions(method=method)
        scores = dynamic_evaluate_ids(
            self.best.model, self.splits.val, options, statistics=self.splits.train
        )
        return {
            f"val_nats_dynamic_{method}": round(scores["nats"], 4),
            f"val_bpc_dynamic_{method}": round(scores["bpc"], 4),
            f"dynamic_{method}": options.describe(),
            f"dynamic_{method}_s": round(time.perf_counter() - started, 1),
        }


def train_to_budget(spec: PipelineSpec, text: str, seconds: float, device: str) -> Trained:
    """Train ``spec`` on ``text`` (its first 90%; the last 10% validates, as nanoGPT splits it)
    until ``seconds`` have passed, evaluations included; evaluate the best checkpoint on the
    whole validation split exactly (one stream, state carried)."""
    fixed = {"train.val_fraction": 0.1, "train.test_fraction": 0.0, "train.max_seconds": seconds}
    pipe = Pipeline.from_spec(spec.override(fixed), device=device)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        pipe.fit(text, out=out)
        wall = time.perf_counter() - started
        directory = f"{out}/best" if pipe.last_run.best_val_bpc else out
        best = Pipeline.load(directory, device=device)
    ids = torch.as_tensor(best.tokenizer.encode(text))
    splits = split_ids(ids.numpy(), val=0.1, test=0.0)
    scores = evaluate_ids(
        best.model, splits.val, batch_size=1, seq_len=1024, warmup=0, device=device
    )
    return Trained(pipe, best, splits, scores, wall)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="text file (e.g. tinyshakespeare.txt)")
    parser.add_argument("--preset", default="shakespeare-cpu", help="charseq preset to train")
    parser.add_argument("--spec", help="spec file instead of a preset")
    add_set_option(parser, "the preset or spec")
    parser.add_argument("--seconds", type=float, default=300.0, help="time budget")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument(
        "--dynamic", action="append", default=[], choices=METHODS,
        help="also evaluate dynamically with this rule (repeatable)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    spec = PipelineSpec.from_file(args.spec) if args.spec else PipelineSpec.from_preset(args.preset)
    # The split and the budget are fixed; everything else is the preset's (or --set's).
    spec = spec.override(spec_changes(args.settings))
    trained = train_to_budget(spec, read_text(args.data), args.seconds, args.device)
    result = trained.record(args.data, args.seconds) | {
        "device": _device_name(args.device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "preset": None if args.spec else args.preset,
        "overrides": args.settings,
        "command": " ".join(["python", "benchmarks/quality.py", *(argv or sys.argv[1:])]),
    }
    for method in args.dynamic:  # after the budget: the best checkpoint, adapting as it reads
        result |= trained.dynamic_record(method)
    print(json.dumps(result))
    return result


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} ({device})"


if __name__ == "__main__":
    main()
