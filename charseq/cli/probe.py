"""``charseq probe``: what a language model's state after each text says about its label.

The labelled texts are read by :func:`~charseq.classify.data.read_labelled`; each is run through
the model and its final state kept, an L1 logistic-regression probe is fitted on part of them
and judged on the rest against always guessing the commonest class, and the single unit that
separates the classes best is shown with its values in each class
(:func:`~charseq.classify.probe.probe_texts`).
"""

from __future__ import annotations

import json

import click

from charseq.classify.data import read_labelled
from charseq.classify.probe import probe_texts
from charseq.cli._errors import clean_exits
from charseq.cli._options import column_options, device_option, json_option, unknown_option
from charseq.errors import CharseqError
from charseq.pipeline import Pipeline

__all__ = ["probe"]


@click.command()
@click.argument("run", type=click.Path(file_okay=False))
@click.option(
    "--data",
    "data_path",
    type=click.Path(dir_okay=True),
    required=True,
    metavar="PATH",
    help="Labelled texts: a TSV/CSV with text and label columns, JSONL, or a directory of "
    "one file per label.",
)
@column_options()
@click.option(
    "--l1",
    type=click.FloatRange(min=0),
    default=0.01,
    show_default=True,
    help="The probe's L1 penalty: larger keeps fewer units.",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(min=0, max=1, min_open=True, max_open=True),
    default=0.25,
    show_default=True,
    help="The share of each class held out to judge the probe and the unit.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the held-out split.")
@unknown_option()
@device_option()
@json_option()
@clean_exits
def probe(
    run: str,
    data_path: str,
    text_column: str | None,
    label_column: str | None,
    l1: float,
    val_fraction: float,
    seed: int,
    unknown: str | None,
    device: str | None,
    as_json: bool,
) -> None:
    """Fit an L1 logistic-regression probe on RUN's final states (a language model's run or
    checkpoint directory) and find the unit that separates the labels best."""
    data = read_labelled(data_path, text_column=text_column, label_column=label_column)
    pipe = Pipeline.load(run, device=device)
    task = getattr(pipe.spec, "task", None)
    task = getattr(task, "name", task)
    if task not in (None, "lm"):
        raise CharseqError(
            f"{run} is a {task!r} run: charseq probe reads a language model's states (a run "
            "of charseq train without --task)"
        )
    report = probe_texts(
        pipe,
        list(data.texts),
        list(data.labels),
        l1=l1,
        seed=seed,
        val_fraction=val_fraction,
        unknown=unknown,
        source=run,
        sources=list(data.sources),
    )
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        click.echo(report.table())
