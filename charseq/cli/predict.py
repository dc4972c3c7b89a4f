"""``charseq predict``: a classifier's label for each line of a file or of standard input."""

from __future__ import annotations

import json
from typing import TextIO

import click

from charseq.cli._errors import clean_exits
from charseq.cli._options import device_option, json_option, unknown_option
from charseq.errors import CharseqError
from charseq.pipeline import Pipeline

__all__ = ["predict"]


@click.command()
@click.argument("checkpoint", type=click.Path())
@click.argument("file", type=click.File("r", encoding="utf-8"), default="-")
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="The most likely labels to show for each text.",
)
@unknown_option()
@device_option()
@json_option()
@clean_exits
def predict(
    checkpoint: str, file: TextIO, top: int, unknown: str | None, device: str | None, as_json: bool
) -> None:
    """Classify each line of FILE (or - for stdin, the default) with a classifier's
    checkpoint: the line's label and its probability, tab-separated (--json: one object a
    line)."""
    pipe = Pipeline.load(checkpoint, device=device)
    if pipe.spec.task.name != "classify":
        raise CharseqError(
            f"{checkpoint} is a language model (task 'lm'): charseq predict needs a classifier "
            "(charseq train --task classify); charseq sample writes text with this one"
        )
    try:
        lines = [line.rstrip("\r\n") for line in file]
    except UnicodeDecodeError as error:
        raise CharseqError(f"{file.name} is not UTF-8 text: {error}") from None
    texts = [line for line in lines if line.strip()]
    if not texts:
        raise CharseqError(f"{file.name} holds no text to classify (one text a line)")
    for text, found in zip(texts, pipe.predict(texts, top=top, unknown=unknown), strict=True):
        if as_json:
            ranked = [{"label": label, "probability": p} for label, p in found.top]
            click.echo(json.dumps({"text": text, "top": ranked}, ensure_ascii=False))
        else:
            shown = "\t".join(f"{label}\t{p:.4f}" for label, p in found.top)
            click.echo(f"{shown}\t{text}")
