"""``charseq sample``: text from a checkpoint, streamed to stdout as it is made.

The sampler flags (``--sampler``, ``--temperature``, ..., ``--set``) become one sampler table in
:func:`sampler_table`, the ``sampler=...`` a Python program passes to
:meth:`Pipeline.stream <charseq.pipeline.Pipeline.stream>` or
:meth:`Pipeline.generate <charseq.pipeline.Pipeline.generate>`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import click

from charseq.cli._errors import clean_exits
from charseq.cli._options import device_option, parse_setting, set_option, unknown_option
from charseq.errors import CharseqError
from charseq.pipeline import Pipeline

__all__ = ["constraint_choice", "sample", "sampler_table"]

_SAMPLE_EPILOG = """\b
char-rnn equivalents:
  th sample.lua cv/x.t7 -primetext "ROMEO:"   charseq sample RUN --prime "ROMEO:"
  -length 2000                                --length 2000
  -temperature 0.8                            --temperature 0.8
  -sample 1 (draw from the softmax)           --sampler temperature
  -sample 0 (always the most likely)          --sampler greedy
  -seed 123                                   --seed 123

\b
Text is written to stdout as it is made. With beam search the best sequence is known only at
the end, so it is written then; with --num-samples or --num-return-sequences above 1 each
sample is written when the batch is done, under a header on stderr.

\b
Constraints work with every sampler: --stop ends the text just after the first stop string
(included; repeatable), --allowed limits the characters that may be generated, --acrostic
forces the first character of each line, or of each clause with --acrostic-after (the
characters after which a head is due), --form makes the text fill a verse form and end there,
and --constraint adds a registered constraint plugin (a name, or a JSON table of its name and
options; repeatable). A 藏头诗, one five-character quatrain whose clauses open with the heads:
  charseq sample RUN --prime "春曉:" --acrostic 春夏秋冬 --acrostic-after "，。:" --form wujue
"""


@click.command(epilog=_SAMPLE_EPILOG)
@click.argument("checkpoint", type=click.Path(file_okay=False))
@click.option("--prime", default="", help="Text to start from (char-rnn: -primetext).")
@click.option(
    "--length",
    default=500,
    show_default=True,
    help="Characters to generate, at most 1000000 (char-rnn: -length).",
)
@click.option("--sampler", default=None, help="greedy, temperature, beam, or a plugin's sampler.")
@click.option("--temperature", type=float, help="Sampling temperature (char-rnn: -temperature).")
@click.option("--top-k", type=int, help="Keep the k most likely characters (temperature sampler).")
@click.option("--top-p", type=float, help="Nucleus sampling mass (temperature sampler).")
@click.option("--min-p", type=float, help="Drop characters below min-p x the top probability.")
@click.option("--repetition-penalty", type=float, help="Penalise characters already generated.")
@click.option("--num-beams", type=int, help="Beam width (implies --sampler beam).")
@click.option("--num-return-sequences", type=int, help="Best sequences per sample (beam).")
@click.option("--seed", type=int, help="Random seed for reproducible output (char-rnn: -seed).")
@click.option(
    "--stop", "stops", multiple=True, metavar="STR", help="Stop after this string (repeatable)."
)
@click.option("--allowed", help="Only these characters may be generated.")
@click.option("--acrostic", help="Force the first character of each line (or clause), in order.")
@click.option(
    "--acrostic-after",
    metavar="CHARS",
    help="The characters after which the next acrostic head is due (default: a newline; with "
    '--form, its clause ends), e.g. "，。:" for the clauses of Chinese verse.',
)
@click.option(
    "--form",
    metavar="NAME|TEMPLATE",
    help="A verse form the text fills and ends with: wujue, qijue, wulv, qilv, or a template "
    "with '?' for each free character.",
)
@click.option(
    "--constraint",
    "constraints",
    multiple=True,
    metavar="NAME|JSON",
    help='A constraint plugin: its name, or a JSON table such as \'{"name": "form", '
    '"template": "wujue"}\' (repeatable).',
)
@click.option("--num-samples", type=int, default=1, show_default=True, help="Samples to make.")
@set_option(
    "Any option of the sampler", "length_penalty=0.8", "OPTION=VALUE", "a plugin sampler's too; "
)
@unknown_option("prime characters")
@device_option()
@clean_exits
def sample(
    checkpoint: str,
    prime: str,
    length: int,
    sampler: str | None,
    temperature: float | None,
    top_k: int | None,
    top_p: float | None,
    min_p: float | None,
    repetition_penalty: float | None,
    num_beams: int | None,
    num_return_sequences: int | None,
    seed: int | None,
    stops: tuple[str, ...],
    allowed: str | None,
    acrostic: str | None,
    acrostic_after: str | None,
    form: str | None,
    constraints: tuple[str, ...],
    num_samples: int,
    settings: tuple[str, ...],
    unknown: str | None,
    device: str | None,
) -> None:
    """Generate text from a checkpoint, streaming it to stdout as it is made: the prime first,
    then the new text (Pipeline.generate returns the new text alone)."""
    flags = {
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "min_p": min_p,
        "repetition_penalty": repetition_penalty,
        "num_beams": num_beams,
        "num_return_sequences": num_return_sequences,
    }
    request: dict[str, Any] = {
        "seed": seed,
        "stop": list(stops) or None,
        "allowed": allowed,
        "acrostic": acrostic,
        "acrostic_after": acrostic_after,
        "form": form,
        "constraints": [constraint_choice(text) for text in constraints],
        "unknown": unknown,
    }
    pipe = Pipeline.load(checkpoint, device=device)
    section = sampler_table(pipe, sampler, flags, settings)
    if num_samples == 1 and (num_return_sequences or 1) == 1:
        _stream(pipe.stream(prime, length, sampler=section, **request), prime)  # checked here
        return
    texts = pipe.generate(prime, length, sampler=section, num_samples=num_samples, **request)
    for i, text in enumerate(texts):
        click.secho(f"--- sample {i + 1}", fg="cyan", err=True)
        click.echo(prime + text)


def sampler_table(
    pipe: Pipeline,
    sampler: str | None,
    flags: Mapping[str, object],
    settings: Sequence[str] = (),
) -> dict[str, Any]:
    """The sampler table (``name`` and options) that ``charseq sample``'s flags ask for.

    Args:
        pipe: the loaded checkpoint, whose own sampler is the start when ``sampler`` is None.
        sampler: the ``--sampler`` name, or None: the checkpoint's sampler, or ``beam`` when a
            beam option (``num_beams``, ``num_return_sequences``) is given and it is another.
        flags: sampler options from their own flags; those that are None are not given.
        settings: ``--set OPTION=VALUE`` strings, applied last; ``name`` is refused (that is
            ``--sampler``).

    Returns:
        A table to pass as ``sampler=...``; the registry checks its options when it is built.
    """
    beam_options = (
        flags.get("num_beams") is not None or flags.get("num_return_sequences") is not None
    )
    if sampler is None and beam_options and pipe.spec.sampler.name != "beam":
        sampler = "beam"  # --num-beams means beam search
    section = pipe.sampler_section() if sampler is None else {"name": sampler}
    section.update({key: value for key, value in flags.items() if value is not None})
    for setting in settings:
        key, value = parse_setting(setting, "--set", "length_penalty=0.8")
        if key == "name":
            raise CharseqError("--set name=...: choose the sampler with --sampler")
        section[key] = value
    return section


def constraint_choice(text: str) -> str | dict[str, Any]:
    """A ``--constraint`` value as ``constraints=[...]`` takes it: a JSON table (it starts with
    ``{``) of the constraint's ``name`` and options, else a registered name.

    Raises:
        CharseqError: a table that is not JSON, or JSON that is not a table.
    """
    if not text.lstrip().startswith("{"):
        return text
    try:
        table = json.loads(text)
    except json.JSONDecodeError as error:
        raise CharseqError(
            f"--constraint {text!r} is not JSON ({error.msg} at character {error.pos}): give a "
            'name, or a table such as \'{"name": "form", "template": "wujue"}\''
        ) from None
    if not isinstance(table, dict):
        raise CharseqError(f"--constraint {text!r}: a JSON table must be an object ({{...}})")
    return table


def _stream(pieces: Iterable[str], prime: str) -> None:
    """Write the prime, then each piece as it comes, and end the line unless the text did."""
    click.echo(prime, nl=False)
    last = prime
    for piece in pieces:
        click.echo(piece, nl=False)
        sys.stdout.flush()
        last = piece or last
    if not last.endswith("\n"):  # end the line, unless the text did (--stop '\n')
        click.echo()
