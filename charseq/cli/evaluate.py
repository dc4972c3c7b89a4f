"""``charseq eval`` and ``charseq score``: how well a checkpoint predicts text, a corpus split
(:func:`~charseq.evaluate.evaluate_checkpoint`) or one text with its surprising positions
(:meth:`Pipeline.score <charseq.pipeline.Pipeline.score>`)."""

from __future__ import annotations

import json
from typing import TextIO

import click

from charseq.classify.metrics import confusion_figure
from charseq.cli._errors import clean_exits
from charseq.cli._options import (
    column_options,
    data_option,
    device_option,
    json_option,
    unknown_option,
)
from charseq.dynamic_eval import METHODS, DynamicEvalOptions
from charseq.errors import CharseqError
from charseq.evaluate import evaluate_checkpoint
from charseq.persist import is_classifier
from charseq.pipeline import Pipeline
from charseq.scoring import UNITS, rate_names

__all__ = ["eval_command", "score"]


@click.command(name="eval")
@click.argument("checkpoint", type=click.Path())
@data_option(
    "Evaluate on this text instead of the run's corpus, which comes from RUN/cache (repeatable)."
)
@click.option(
    "--split",
    type=click.Choice(["train", "val", "test", "all"]),
    default=None,
    help="Which part of the corpus, split as in training (default: test; all of a --data text).",
)
@unknown_option(also="; skipped ones are not scored")
@column_options("A classifier: ")
@click.option(
    "--confusion",
    type=click.Path(dir_okay=False),
    help="A classifier: also draw its confusion matrix into this PNG (the plot extra).",
)
@click.option(
    "--dynamic",
    is_flag=True,
    help="Also evaluate with dynamic evaluation (the model adapts to the text as it reads it, "
    "a gradient step per segment) and print both.",
)
@click.option(
    "--dynamic-method",
    type=click.Choice(METHODS),
    help="Dynamic evaluation's update rule (default: rms).",
)
@click.option(
    "--dynamic-lr",
    type=click.FloatRange(min=0),
    help="Dynamic evaluation's learning rate (default: the method's, rms 5e-4, sgd 0.1).",
)
@click.option(
    "--dynamic-decay",
    type=click.FloatRange(min=0),
    help="Dynamic evaluation's pull back to the stored weights (default: 0.02).",
)
@click.option(
    "--dynamic-segment-len",
    type=click.IntRange(min=1),
    help="Tokens between two of dynamic evaluation's steps (default: 50).",
)
@click.option(
    "--dynamic-seed",
    type=int,
    help="Where in the training split the rms rule's gradient statistics start (default: 0).",
)
@device_option()
@json_option()
@clean_exits
def eval_command(
    checkpoint: str,
    data_paths: tuple[str, ...],
    split: str | None,
    unknown: str | None,
    text_column: str | None,
    label_column: str | None,
    confusion: str | None,
    dynamic: bool,
    dynamic_method: str | None,
    dynamic_lr: float | None,
    dynamic_decay: float | None,
    dynamic_segment_len: int | None,
    dynamic_seed: int | None,
    device: str | None,
    as_json: bool,
) -> None:
    """Report nats/char and bits per character (BPC) of a checkpoint on a split, with
    --dynamic also under dynamic evaluation; for a classifier, its accuracy, macro-F1,
    per-class scores and confusion matrix on --data."""
    given = {
        "method": dynamic_method,
        "lr": dynamic_lr,
        "decay": dynamic_decay,
        "segment_len": dynamic_segment_len,
        "seed": dynamic_seed,
    }
    options = {key: value for key, value in given.items() if value is not None}
    if options and not dynamic:
        flags = [f"--dynamic-{key.replace('_', '-')}" for key in options]
        what = "is an option" if len(flags) == 1 else "are options"
        raise CharseqError(f"{', '.join(flags)} {what} of dynamic evaluation: add --dynamic")
    if is_classifier(checkpoint):
        if dynamic:
            raise CharseqError(
                "--dynamic adapts a language model to the text it predicts; this checkpoint "
                "is a classifier, which predicts labels (charseq eval without --dynamic)"
            )
        columns = {"text_column": text_column, "label_column": label_column}
        _eval_classifier(checkpoint, data_paths, split, columns, confusion, device, as_json)
        return
    if confusion:
        raise CharseqError(
            "--confusion draws a classifier's confusion matrix; this is a language model"
        )
    if split is None:
        split = "all" if data_paths else "test"
    scores = evaluate_checkpoint(
        checkpoint,
        files=list(data_paths) or None,
        split=split,
        device=device,
        unknown=unknown,
        dynamic=DynamicEvalOptions(**options) if dynamic else False,
    )
    if as_json:
        click.echo(json.dumps(scores))
        return
    unit = UNITS.get(scores["tokenizer"], "tokens")
    per, bits = rate_names(unit)
    if "dynamic" in scores:
        click.echo(_side_by_side(scores, unit, per, bits))
        return
    click.echo(
        f"{scores['split']}: {scores['nats']:.4f} nats/{per}, {scores['bpc']:.4f} {bits} "
        f"over {scores['tokens']} {unit}"
    )


def _side_by_side(scores: dict, unit: str, per: str, bits: str) -> str:
    """The static and dynamic numbers of ``charseq eval --dynamic`` as a small table, and
    how the dynamic ones were made."""
    dynamic = scores["dynamic"]
    options = DynamicEvalOptions(**dynamic["options"])
    source = {
        "train": "the train split",
        "self": f"the evaluated text's first segments (at most {options.stats_segments})",
    }.get(dynamic["statistics"])
    head = f"{scores['split']}, {scores['tokens']} {unit}"
    width = max(len(head), len("dynamic"))
    lines = [
        f"{head:<{width}}  {'nats/' + per:>10}  {bits:>10}",
        f"{'static':<{width}}  {scores['nats']:>10.4f}  {scores['bpc']:>10.4f}",
        f"{'dynamic':<{width}}  {dynamic['nats']:>10.4f}  {dynamic['bpc']:>10.4f}",
        f"dynamic evaluation: {options.describe()}",
    ]
    if source:
        lines.append(f"gradient statistics: {source}")
    if not round(dynamic["nats"], 4) <= round(scores["nats"], 4):  # as printed (or NaN): worse
        lines.append(
            "note: dynamic evaluation scored worse than static: its steps are too large for "
            "this model; try a smaller --dynamic-lr"
        )
    return "\n".join(lines)


def _eval_classifier(
    checkpoint: str,
    data_paths: tuple[str, ...],
    split: str | None,
    columns: dict[str, str | None],
    confusion: str | None,
    device: str | None,
    as_json: bool,
) -> None:
    """``charseq eval`` of a classifier: its metrics on a labelled ``--data``."""
    if len(data_paths) != 1:
        raise CharseqError(
            "a classifier is evaluated on labelled texts: --data labelled.tsv (all of it; "
            "--split val or test: that part of the data it was trained on)"
        )
    pipe = Pipeline.load(checkpoint, device=device)
    metrics = pipe.classification_metrics(data_paths[0], split=split or "all", **columns)
    if confusion:
        confusion_figure(metrics, confusion)
    click.echo(json.dumps(metrics.to_dict(), ensure_ascii=False) if as_json else metrics.table())


@click.command()
@click.argument("checkpoint", type=click.Path(file_okay=False))
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--prime", default="", help="Context before the text (not scored).")
@click.option(
    "--top",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Surprising positions to list.",
)
@unknown_option()
@device_option()
@json_option()
@clean_exits
def score(
    checkpoint: str,
    file: TextIO,
    prime: str,
    top: int,
    unknown: str | None,
    device: str | None,
    as_json: bool,
) -> None:
    """Score FILE (or - for stdin) under a checkpoint: total nats, BPC, surprising positions."""
    try:
        text = file.read()
    except UnicodeDecodeError as error:
        raise CharseqError(f"{file.name} is not UTF-8 text: {error}") from None
    pipe = Pipeline.load(checkpoint, device=device)
    result = pipe.score(text, prime=prime, top=top, unknown=unknown)
    click.echo(json.dumps(result.to_dict()) if as_json else result.summary())
