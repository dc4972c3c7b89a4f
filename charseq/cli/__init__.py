"""The ``charseq`` command: a thin shell over the Python API.

The group lives here; each command lives in its own module (``train``, ``sample``, ``eval`` and
``score`` in ``evaluate``, ``predict``, ``probe``, ``inspect``, ``plot``, ``plugins``,
``serve``), its shared options in ``_options`` and the one place an error becomes the ``Error:``
line in ``_errors``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import click

from charseq.cli import evaluate, inspect, plot, plugins, predict, probe, sample, serve, train
from charseq.cli._errors import error_line

__all__ = ["cli", "main"]


def main() -> None:
    """Entry point of the ``charseq`` script."""
    cli(prog_name="charseq")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="charseq")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """charseq: pluggable character-level sequence models."""
    ctx.with_resource(_plain_warnings())


@contextmanager
def _plain_warnings() -> Iterator[None]:
    """Warnings as one plain line on stderr (not Python's file:line and source line), in the
    command line's terms as errors are (:func:`~charseq.cli._errors.error_line`)."""

    def show(message: Warning | str, *_: object) -> None:
        text = error_line(message) if isinstance(message, Warning) else message
        click.echo(f"warning: {text}", err=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


# each module keeps its name (charseq.cli.train is the module, its command is train.train)
for _command in (
    plugins.plugins,
    train.train,
    evaluate.eval_command,
    sample.sample,
    predict.predict,
    evaluate.score,
    inspect.inspect,
    plot.plot,
    probe.probe,
    serve.serve,
):
    cli.add_command(_command)
