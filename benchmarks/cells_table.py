"""Cells like for like: each cell at the same size, on the same texts, for the same time.

For every text (``--data``, repeatable), size (``--params``) and cell (``--cells``), trains the
preset (``shakespeare-cpu`` unless told) with only the cell and its width changed, for
``--seconds`` on the text's first 90%, and scores the best checkpoint on the last 10% (nanoGPT's
split), statically and with dynamic evaluation (``--dynamic``, default ``rms``).

- **Same size**: the width (``cell.hidden_size``) of each cell is the one whose recurrent layers
  have the parameter count nearest the target. The count leaves out the embedding and the output
  layer, whose size the text's vocabulary sets (thousands of characters for Chinese poems), so
  that a size means the same recurrent capacity on every text; each row also records the
  model's total.
- **Same time**: the learning-rate schedule (the preset's cosine) must end when the budget does,
  whatever a cell's speed. A short calibration run measures each configuration's steps per
  second, and ``train.steps`` becomes what fits the budget, less a share for the evaluations;
  ``train.max_seconds`` stops the run at the budget in any case.

Each row is one JSON line appended to ``--out`` as soon as it is measured, and rows already there
are skipped: an interrupted table goes on where it stopped. ``--markdown`` prints the table from
that file and exits.

    python benchmarks/cells_table.py --data ../shared/data/tinyshakespeare.txt \\
        --data ../shared/data/poems.train.txt --out benchmarks/cells_table.jsonl
    python benchmarks/cells_table.py --out benchmarks/cells_table.jsonl --markdown
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from _bench import add_set_option, machine, spec_changes
from quality import train_to_budget

from charseq import Pipeline, PipelineSpec
from charseq.corpus import read_text
from charseq.dynamic_eval import METHODS

CELLS = ("rnn", "gru", "lstm", "mgu", "mogrifier")
EVAL_SHARE = 0.12  # of the budget, left for the evaluations during training


def parse_size(text: str) -> int:
    """``"0.4M"`` -> 400000, ``"250k"`` -> 250000, ``"3000000"`` -> 3000000."""
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:].lower(), 1)
    number = text[:-1] if scale > 1 else text
    try:
        value = float(number) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 0.4M, 250k)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"a size must be at least 1 parameter, got {text!r}")
    return int(value)


def recurrent_parameters(spec: PipelineSpec) -> int:
    """Parameters of ``spec``'s recurrent layers: the model's less its embedding and head."""
    pipe = Pipeline.from_spec(spec, device="cpu")
    pipe.tokenizer.fit("ab")
    return sum(p.numel() for p in pipe.build_model().stack.parameters())


def width_for(spec: PipelineSpec, cell: str, target: int) -> tuple[int, int]:
    """The ``cell.hidden_size`` whose recurrent layers come nearest ``target`` parameters, and
    their count (the count grows with the width, so a bisection finds it)."""

    def count(width: int) -> int:
        return recurrent_parameters(spec.override({"cell.name": cell, "cell.hidden_size": width}))

    low, high = 1, 2
    while count(high) < target:
        low, high = high, high * 2
    while high - low > 1:  # count(low) < target <= count(high)
        middle = (low + high) // 2
        low, high = (middle, high) if count(middle) < target else (low, middle)
    width = min((low, high), key=lambda w: abs(count(w) - target))
    return width, count(width)


def steps_per_second(spec: PipelineSpec, text: str, seconds: float, device: str) -> float:
    """Training steps per second of ``spec`` on ``text``: a ``seconds``-long run, no evaluation
    (setup and the first, slower steps included, so the estimate errs low)."""
    calibration = {
        "train.steps": 10**9,
        "train.max_seconds": seconds,
        "train.val_fraction": 0.0,
        "train.test_fraction": 0.0,
        "train.eval_every": 0,
    }
    pipe = Pipeline.from_spec(spec.override(calibration), device=device)
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        pipe.fit(text, out=out)
        wall = time.perf_counter() - started
    return pipe.last_run.step / wall


def measure(spec: PipelineSpec, data: str, text: str, args: argparse.Namespace) -> dict:
    """One row: calibrate, train to the budget, score statically and dynamically."""
    rate = steps_per_second(spec, text, args.calibrate, args.device)
    steps = max(1, int(rate * args.seconds * (1 - EVAL_SHARE)))
    planned = spec.override({"train.steps": steps, "train.eval_every": max(1, steps // 4)})
    trained = train_to_budget(planned, text, args.seconds, args.device)
    row = trained.record(data, args.seconds) | {"planned_steps": steps}
    for method in args.dynamic:
        row |= trained.dynamic_record(method)
    return row


def done_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def markdown(rows: list[dict]) -> str:
    """The rows as one Markdown table per text, best static score of each size in bold."""
    lines = []
    for data in dict.fromkeys(row["data"] for row in rows):
        lines += [
            f"`{data}`:",
            "",
            "| size | cell | width | recurrent params | all params | steps (planned) "
            "| static nats/char | dynamic rms |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        mine = [row for row in rows if row["data"] == data]
        for size in dict.fromkeys(row["size"] for row in mine):
            group = [row for row in mine if row["size"] == size]
            best = min(row["val_nats"] for row in group)
            for row in group:
                static = f"{row['val_nats']:.4f}"
                dynamic = row.get("val_nats_dynamic_rms")
                lines.append(
                    f"| {size} | {row['cell']} | {row['hidden_size']} "
                    f"| {row['recurrent_params']:,} | {row['params']:,} "
                    f"| {row['steps']} ({row['planned_steps']}) "
                    f"| {f'**{static}**' if row['val_nats'] == best else static} "
                    f"| {'' if dynamic is None else f'{dynamic:.4f}'} |"
                )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", action="append", default=[], help="a text file (repeatable)")
    parser.add_argument("--cells", nargs="+", default=list(CELLS), help="cell plugins' names")
    parser.add_argument(
        "--params", nargs="+", type=parse_size, default=[400_000, 3_000_000],
        help="recurrent-layer sizes (default: 0.4M 3M)",
    )  # fmt: skip
    parser.add_argument("--preset", default="shakespeare-cpu", help="the recipe every row trains")
    add_set_option(parser, "the preset (for every row)")
    parser.add_argument("--seconds", type=float, default=300.0, help="time budget of each row")
    parser.add_argument(
        "--calibrate", type=float, default=15.0, help="seconds of each row's speed calibration"
    )
    parser.add_argument(
        "--dynamic", nargs="*", default=["rms"], choices=METHODS,
        help="dynamic evaluation rules to score with (none: static only)",
    )  # fmt: skip
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, appended and resumed")
    parser.add_argument("--markdown", action="store_true", help="print --out as a table; exit")
    args = parser.parse_args(argv)
    if args.markdown:
        rows = done_rows(args.out)
        print(markdown(rows))
        return rows
    if not args.data:
        parser.error("give at least one --data text (or --markdown)")
    if args.threads:
        torch.set_num_threads(args.threads)

    preset = PipelineSpec.from_preset(args.preset).override(spec_changes(args.settings))
    rows = done_rows(args.out)
    done = {(row["data"], row["size"], row["cell"]) for row in rows}
    texts = {data: read_text(data) for data in args.data}  # every file read before any training
    for data in args.data:
        for target in args.params:
            for cell in args.cells:
                size = f"{target / 1e6:g}M"
                if (data, size, cell) in done:
                    continue
                width, count = width_for(preset, cell, target)
                spec = preset.override({"cell.name": cell, "cell.hidden_size": width})
                row = {"data": data, "size": size, "cell": cell, "hidden_size": width}
                row |= {"recurrent_params": count, "preset": args.preset}
                row |= measure(spec, data, texts[data], args) | machine(torch.device(args.device))
                row |= {"threads": torch.get_num_threads(), "overrides": args.settings}
                with args.out.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


if __name__ == "__main__":
    main()
