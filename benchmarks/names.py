"""Names at a fixed time budget: which language is a surname? Test accuracy and macro-F1.

The data is :func:`charseq.classify.datasets.surnames`: Faker's surname lists of ten languages
(``--per-language`` names drawn from each, names found in two languages dropped, Cyrillic and
Greek romanised), split by language into train, val and test (80/10/10, seeded, as
``Pipeline.fit`` splits it). Each ``--cells`` cell is trained on the train part until the time
budget (evaluations on val included); the checkpoint with the best validation macro-F1 is then
scored on the test part. The bag-of-n-grams baseline (``NgramBaseline``) is fitted on the same
train part and scored on the same test part, so every number has its reference. Prints one JSON
line.

    python benchmarks/names.py --seconds 90 --threads 1
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from charseq import Pipeline, PipelineSpec
from charseq.classify.baseline import NgramBaseline
from charseq.classify.data import Labelled, LabelledSplits, stratified_split
from charseq.classify.datasets import surnames
from charseq.classify.metrics import ClassificationMetrics, classification_metrics

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import add_set_option, spec_changes  # noqa: E402

SPEC: dict[str, Any] = {
    "task": {"name": "classify", "pooling": "last", "dropout": 0.2},
    "cell": {"name": "gru", "hidden_size": 256, "num_layers": 1},
    "model": {"embedding_size": 32},
    "optimizer": {"name": "adam", "lr": 0.005},
    "train": {
        "steps": 1_000_000,  # the time budget stops it
        "batch_size": 64,
        "eval_every": 200,
        "val_fraction": 0.1,
        "test_fraction": 0.1,
        "seed": 0,
    },
}
"""What every cell trains with; ``--set`` changes it, ``--cells`` picks ``cell.name``."""


def scores(metrics: ClassificationMetrics) -> dict[str, float]:
    """Accuracy and macro-F1, to four places."""
    return {"accuracy": round(metrics.accuracy, 4), "macro_f1": round(metrics.macro_f1, 4)}


def on_test(
    baseline: NgramBaseline, data: Labelled, split: LabelledSplits
) -> ClassificationMetrics:
    """The baseline's metrics on the test part."""
    predicted = baseline.predict([data.texts[i] for i in split.test])
    return classification_metrics(data.label_ids()[split.test], predicted, data.classes)


def train_cell(spec: PipelineSpec, data: Labelled, split: LabelledSplits) -> dict[str, Any]:
    """Train ``spec`` to its time budget; score its best checkpoint on the test part."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        pipe = Pipeline.from_spec(spec, device="cpu").fit(data=data, out=out)
        wall = time.perf_counter() - started
        best = Pipeline.load(f"{out}/best", device="cpu")
    metrics = best.classification_metrics(data, split="test", batch_size=256)
    assert metrics.total == len(split.test)  # the split the baseline is scored on
    return scores(metrics) | {
        "best_val_macro_f1": round(pipe.last_run.best, 4),
        "best_step": best.steps_trained,
        "steps": pipe.last_run.step,
        "wall_s": round(wall, 1),
        "params": sum(p.numel() for p in best.model.parameters()),
        "spec": {k: v for k, v in best.spec.to_dict().items() if k in ("task", "cell", "model")},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=90.0, help="training budget per cell")
    parser.add_argument("--cells", nargs="+", default=["gru", "mgu"], help="cells to train")
    parser.add_argument(
        "--per-language", type=int, default=500, help="names drawn a language (0: every name)"
    )
    parser.add_argument("--ascii", action="store_true", help="fold accents too (Dvořák: Dvorak)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw, split and weights")
    add_set_option(parser, "every cell")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    data = surnames(per_language=args.per_language or None, ascii=args.ascii, seed=args.seed)
    changes = spec_changes(args.settings)
    base = PipelineSpec.from_dict(SPEC).override(
        {"train.max_seconds": args.seconds, "train.seed": args.seed} | changes
    )
    train = base.train
    split = stratified_split(
        data.labels, val=train.val_fraction, test=train.test_fraction, seed=train.seed
    )

    ids = data.label_ids()
    started = time.perf_counter()
    baseline = NgramBaseline(seed=args.seed).fit(
        [data.texts[i] for i in split.train], ids[split.train], len(data.classes)
    )
    fit_s = time.perf_counter() - started
    metrics = on_test(baseline, data, split)
    cells = {
        cell: train_cell(base.override({"cell.name": cell}), data, split) for cell in args.cells
    }

    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "data": {
            "names": len(data),
            "per_language": args.per_language,
            "ascii": args.ascii,
            "counts": {
                name: int(n) for name, n in zip(data.classes, np.bincount(ids), strict=True)
            },
            "train": len(split.train),
            "val": len(split.val),
            "test": len(split.test),
        },
        "baseline": scores(metrics) | {"fit_s": round(fit_s, 1)},
        "cells": cells,
        "budget_s": args.seconds,
        "device": f"{platform.processor() or platform.machine()} (cpu)",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "overrides": args.settings,
        "command": " ".join(["python", "benchmarks/names.py", *(argv or sys.argv[1:])]),
    }
    print(json.dumps(result, ensure_ascii=False))
    return result


if __name__ == "__main__":
    main()
