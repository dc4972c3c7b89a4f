"""``charseq inspect``: what the units of a checkpoint do on a text.

``--find`` runs every feature detector (or those named with ``--detector``) on the text and
prints, for each, the units that track it best (:func:`~charseq.inspect.find_units`), then how
saturated each layer's gates are (:func:`~charseq.inspect.gate_saturation`). ``--html PATH``
writes the same findings and gates into the report page, one offline HTML file that colours the
text by any unit (:func:`~charseq.inspect.report.write_report`).
"""

from __future__ import annotations

import json
from typing import TextIO

import click

from charseq.cli._errors import clean_exits
from charseq.cli._options import device_option, json_option, unknown_option
from charseq.errors import CharseqError
from charseq.inspect import (
    Activations,
    Finding,
    GateSaturation,
    detect,
    find_units,
    gate_saturation,
)
from charseq.inspect.report import write_report
from charseq.pipeline import Pipeline
from charseq.registry import get_registry

__all__ = ["inspect"]

_LEGEND = """\
* above chance: larger than any unit reaches with the detector shifted along the text, and than
  an untrained stand-in reaches reading the same text (charseq.inspect.find_units explains)
base: the accuracy of always guessing the commoner value of a 0/1 detector"""


@click.command()
@click.argument("checkpoint", type=click.Path(file_okay=False))
@click.option(
    "--text",
    "text_file",
    type=click.File("r", encoding="utf-8"),
    required=True,
    help="The text to run through the model (- for stdin).",
)
@click.option("--find", is_flag=True, help="List the units that track each feature detector.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    help="Write the report page to this file: the text coloured by any unit, the guesses, "
    "the search's units and the gates, in one HTML file that works offline.",
)
@click.option(
    "--trace",
    "traces",
    multiple=True,
    metavar="KEY",
    help="A tensor to embed whole in the --html page, e.g. 1:f (repeatable; default: every "
    "layer's output and state).",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Units to list per detector.",
)
@click.option(
    "--detector",
    "detectors",
    multiple=True,
    metavar="NAME",
    help="A detector to search for (repeatable; default: all, see charseq plugins).",
)
@click.option(
    "--max-chars",
    type=click.IntRange(min=1),
    default=50_000,
    show_default=True,
    help="Read at most this many characters of the text.",
)
@unknown_option()
@device_option()
@json_option()
@clean_exits
def inspect(
    checkpoint: str,
    text_file: TextIO,
    find: bool,
    html_path: str | None,
    traces: tuple[str, ...],
    top: int,
    detectors: tuple[str, ...],
    max_chars: int,
    unknown: str | None,
    device: str | None,
    as_json: bool,
) -> None:
    """Show what the units of CHECKPOINT (or a run directory) do on a text."""
    if not find and not html_path:
        raise CharseqError(
            "say what to show: --find lists the units that track each detector, --html PATH "
            "writes the report page"
        )
    if traces and not html_path:
        raise CharseqError("--trace chooses what the --html page embeds: give --html PATH")
    for name in detectors:
        get_registry().get("detector", name)  # an unknown name fails before the model loads
    try:
        text = text_file.read(max_chars + 1)
    except UnicodeDecodeError as error:
        raise CharseqError(f"{text_file.name} is not UTF-8 text: {error}") from None
    if not text:
        raise CharseqError(f"{text_file.name} is empty: there is nothing to inspect")
    if len(text) > max_chars:
        text = text[:max_chars]
        click.echo(f"inspecting the first {max_chars} characters (--max-chars)", err=True)
    pipe = Pipeline.load(checkpoint, device=device)
    acts = pipe.activations(text, unknown=unknown)
    found = find_units(acts, list(detectors) or None, top=top)
    gates = gate_saturation(acts)
    if html_path:
        about = {"model": f"{checkpoint} (step {pipe.steps_trained})", "text": text_file.name}
        page = write_report(
            acts, html_path, findings=found, saturation=gates, traces=traces or None, about=about
        )
        click.echo(f"wrote {page} ({page.stat().st_size / 1e6:.1f} MB)", err=True)
    if not find:
        return
    base = _base_accuracy(acts, found)
    if as_json:
        report = {
            "characters": len(acts.text),
            "tokens": len(acts),
            "findings": {name: [f.to_dict() for f in items] for name, items in found.items()},
            "base_accuracy": base,
            "gates": [g.to_dict() for g in gates],
        }
        click.echo(json.dumps(report))
        return
    click.echo(f"{len(acts.text)} characters, {len(acts)} tokens\n")
    click.echo(_findings_table(found, base))
    click.echo(f"\n{_LEGEND}\n")
    click.echo(_gates_table(gates))


def _base_accuracy(acts: Activations, found: dict[str, list[Finding]]) -> dict[str, float | None]:
    """For each 0/1 detector, the accuracy of always guessing its commoner value: what a
    finding's threshold accuracy is to be compared with (``None`` for a count)."""
    binary = [name for name, findings in found.items() if findings[0].accuracy is not None]
    values = detect(acts, binary)
    base = {name: float(max(values[name].mean(), 1 - values[name].mean())) for name in binary}
    return {name: base.get(name) for name in found}


def _findings_table(found: dict[str, list[Finding]], base: dict[str, float | None]) -> str:
    """One row per finding, the detector and its base accuracy on its first row; one row for a
    detector that is constant over the text (nothing correlates with it)."""
    lines = [
        f"{'detector':<16}{'unit':<12}{'correlation':>12}{'accuracy':>10}{'base':>7}"
        f"{'threshold':>11}{'chance':>8}"
    ]
    for name, findings in found.items():
        if all(f.correlation == 0 and f.chance == 0 for f in findings):
            lines.append(f"{name:<16}constant over this text: nothing to find")
            continue
        for i, f in enumerate(findings):
            mark = "*" if f.above_chance else " "
            accuracy = "-" if f.accuracy is None else f"{f.accuracy:.3f}"
            rate = "" if i else "-" if base[name] is None else f"{base[name]:.3f}"
            threshold = "-" if f.threshold is None else f"{f.threshold:+.3f}"
            lines.append(
                f"{name if i == 0 else '':<16}{f.unit:<12}{f.correlation:>+11.3f}{mark}"
                f"{accuracy:>10}{rate:>7}{threshold:>11}{f.chance:>8.3f}"
            )
    return "\n".join(lines)


def _gates_table(gates: list[GateSaturation]) -> str:
    """Each gate's mean left and right saturation, layer by layer."""
    if not gates:
        return "gate saturation: the model has no gates (internals with values in [0, 1])"
    lines = [
        "gate saturation: the fraction of characters x units below 0.1 (left), above 0.9 (right)",
        f"{'layer':<7}{'gate':<8}{'left':>7}{'right':>7}",
    ]
    for g in gates:
        lines.append(f"{g.layer:<7}{g.gate:<8}{g.left_mean:>7.3f}{g.right_mean:>7.3f}")
    return "\n".join(lines)
