"""``charseq plot``: training curves of one or more runs, drawn from their ``metrics.jsonl``
(:func:`~charseq.inspect.curves.plot_runs`) into a PNG or an SVG."""

from __future__ import annotations

import click

from charseq.cli._errors import clean_exits
from charseq.inspect.curves import plot_runs

__all__ = ["plot"]


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option(
    "-o",
    "--out",
    default="curves.png",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The figure: .png or .svg.",
)
@clean_exits
def plot(runs: tuple[str, ...], out: str) -> None:
    """Draw the training and validation loss and the learning rate of RUNS, overlaid, against
    steps and against training time (needs matplotlib: pip install "charseq[plot]")."""
    path = plot_runs(runs, out)
    click.echo(f"wrote {path}", err=True)
