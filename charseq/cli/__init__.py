"""The ``charseq`` command: a thin shell over the Python API."""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from charseq.callbacks import ProgressBar, SampleEvery
from charseq.errors import CharseqError, SpecError
from charseq.options import format_default
from charseq.registry import get_registry
from charseq.spec import TOO_MANY_DIGITS, presets


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
    """Warnings as one plain line on stderr (not Python's file:line and source line)."""
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *_: click.echo(f"warning: {message}", err=True)
        yield


def _fail(error: Exception) -> None:
    raise click.ClickException(str(error)) from None


def _clean_exits(command: Callable[..., None]) -> Callable[..., None]:
    """Ctrl-C exits with status 130, a reader that stops early (``| head``) ends the command
    quietly with status 0, and what the machine refuses (a file it cannot read or write, memory
    it does not have) is an ``Error:`` line with status 1: no traceback, no 'Aborted!'."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        except KeyboardInterrupt:
            raise SystemExit(130) from None
        except BrokenPipeError:
            # Python's advice: point stdout at devnull so the flush at exit cannot fail again
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, sys.stdout.fileno())
            finally:
                os.close(devnull)
            raise SystemExit(0) from None
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            _fail(CharseqError(f"{where}{error.strerror or error}"))
        except (MemoryError, RuntimeError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            if isinstance(error, RuntimeError) and not _OUT_OF_MEMORY.search(first):
                raise
            _fail(CharseqError(f"not enough memory for this: {first}"))

    return run


_OUT_OF_MEMORY = re.compile(r"can't allocate memory|out of memory|not enough memory", re.I)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@_clean_exits
def plugins(as_json: bool) -> None:
    """List every registered component, its owner and options; and failed or blocked plugins."""
    try:
        registry = get_registry()
    except CharseqError as error:
        _fail(error)
    if as_json:
        click.echo(json.dumps(registry.describe(), indent=2))
        return
    kind = None
    for component in registry.components():
        if component.kind != kind:
            kind = component.kind
            click.secho(f"{kind}s", bold=True)
        owner = component.owner
        click.echo(
            f"  {registry.name_of(component):<12} {component.help}  "
            f"[{owner.distribution} {owner.version}]"
        )
        for option in component.describe()["options"]:
            default = format_default(option["default"])  # as a spec writes it; None: unset
            click.echo(
                f"      {option['name']} ({option['type']}, default {default}): {option['help']}"
            )
    for failure in registry.failures:
        click.secho(f"failed: {failure}", fg="red")
    for blocked in registry.blocked:
        click.echo(f"not loaded: {blocked.plugin} ({blocked.distribution}): {blocked.reason}")


@cli.command()
@click.option(
    "--spec", "spec_path", type=click.Path(dir_okay=False), help="Spec file (.toml/.json)."
)
@click.option("--preset", help="A spec shipped with charseq: " + ", ".join(presets()) + ".")
@click.option(
    "--data",
    "data_paths",
    multiple=True,
    metavar="PATH",
    help="Text file, directory or - (stdin); repeatable. Default: Python's own standard-library "
    "source (no download). With --resume: the run's corpus, needed only if RUN/cache is gone.",
)
@click.option("--include", multiple=True, metavar="GLOB", help="Files to take from directories.")
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of --data.")
@click.option("--normalize", type=click.Choice(["NFC", "NFKC"]), help="Unicode normalisation.")
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a spec value, e.g. --set cell.hidden_size=256 (repeatable).",
)
@click.option("--steps", type=int, help="Optimizer steps (overrides train.steps).")
@click.option("--max-seconds", type=float, help="Training time budget (train.max_seconds).")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="runs/latest",
    show_default=True,
    help="Run directory for checkpoints, metrics.jsonl and the corpus cache.",
)
@click.option("--resume", "resume_dir", type=click.Path(), help="Continue this run exactly.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run in --out.")
@click.option("--sample-every", type=int, default=0, help="Print a sample every N steps.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1, mps (default: the best found).")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@click.option(
    "--print-spec",
    is_flag=True,
    help="Print the spec these options make (every option, as TOML) and exit without training.",
)
@_clean_exits
def train(
    spec_path,
    preset,
    data_paths,
    include,
    encoding,
    normalize,
    settings,
    steps,
    max_seconds,
    out_dir,
    resume_dir,
    overwrite,
    sample_every,
    device,
    progress,
    print_spec,
) -> None:
    """Train a model, writing checkpoints to a run directory (Ctrl-C saves and stops)."""
    from charseq.corpus import find_sources, python_source_files
    from charseq.pipeline import Pipeline

    try:
        if print_spec:
            if resume_dir:
                raise CharseqError("--print-spec shows a new run's spec: drop --resume")
            click.echo(_spec(spec_path, preset, settings, steps, max_seconds).to_toml(), nl=False)
            return
        callbacks = _train_callbacks(progress, sample_every)
        if resume_dir:
            if spec_path or preset or settings:
                raise CharseqError("--resume continues a run as it was: drop --spec/--preset/--set")
            given = click.get_current_context().get_parameter_source("out_dir")
            if given is click.core.ParameterSource.COMMANDLINE or overwrite:
                raise CharseqError(
                    "--resume writes into the run it continues: drop --out and --overwrite"
                )
            pipe = Pipeline.resume(
                resume_dir,
                files=list(data_paths) or None,
                steps=steps,
                max_seconds=max_seconds,
                callbacks=callbacks,  # the run directory gets metrics.jsonl
                handle_signals=True,
                device=device,
            )
        else:
            spec = _spec(spec_path, preset, settings, steps, max_seconds)
            include = include or ("*",)
            sources = find_sources(
                list(data_paths) or python_source_files(), include, encoding=encoding
            )
            run_dir = _check_run_dir(Path(out_dir), overwrite)
            pipe = Pipeline.from_spec(spec, device=device)
            # fit creates, locks and (if it fails before a checkpoint) removes the directory
            pipe.fit(
                files=sources,
                include=include,
                encoding=encoding,
                normalize=normalize,
                out=run_dir,
                overwrite=overwrite,
                callbacks=callbacks,  # the run directory gets metrics.jsonl
                handle_signals=True,
            )
    except CharseqError as error:
        _fail(error)
    result = pipe.result
    best = f", best val BPC {result.best_val_bpc:.4f}" if result.best_val_bpc is not None else ""
    click.echo(
        f"stopped at step {result.step} ({result.reason}){best}; checkpoint {result.checkpoint}",
        err=True,
    )
    if result.reason == "interrupted":
        sys.exit(130)


@cli.command(name="eval")
@click.argument("checkpoint", type=click.Path())
@click.option(
    "--data",
    "data_paths",
    multiple=True,
    metavar="PATH",
    help="Evaluate on this text instead of the run's corpus, which comes from RUN/cache "
    "(repeatable).",
)
@click.option(
    "--split",
    type=click.Choice(["train", "val", "test", "all"]),
    default=None,
    help="Which part of the corpus, split as in training (default: test; all of a --data text).",
)
@click.option(
    "--unknown",
    type=click.Choice(["error", "skip", "replace"]),
    default=None,
    help="What to do with characters outside the vocabulary (default: the tokenizer's); "
    "skipped ones are not scored.",
)
@click.option("--device", default=None, help="cpu, cuda, mps (default: the best found).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@_clean_exits
def evaluate(checkpoint, data_paths, split, unknown, device, as_json) -> None:
    """Report nats/char and bits per character (BPC) of a checkpoint on a split."""
    from charseq.evaluate import evaluate_checkpoint
    from charseq.scoring import UNITS, rate_names

    if split is None:
        split = "all" if data_paths else "test"
    try:
        scores = evaluate_checkpoint(
            checkpoint, files=list(data_paths) or None, split=split, device=device, unknown=unknown
        )
    except CharseqError as error:
        _fail(error)
    if as_json:
        click.echo(json.dumps(scores))
    else:
        unit = UNITS.get(scores["tokenizer"], "tokens")
        per, bits = rate_names(unit)
        click.echo(
            f"{scores['split']}: {scores['nats']:.4f} nats/{per}, {scores['bpc']:.4f} {bits} "
            f"over {scores['tokens']} {unit}"
        )


def _spec(spec_path, preset, settings, steps, max_seconds):
    from charseq.spec import PipelineSpec

    if spec_path and preset:
        raise CharseqError("give --spec or --preset, not both")
    if preset:
        spec = PipelineSpec.from_preset(preset)
    elif spec_path:
        spec = PipelineSpec.from_file(spec_path)
    else:
        spec = PipelineSpec.from_dict({})
    changes = dict(_parse_setting(s) for s in settings)
    if steps is not None:
        changes["train.steps"] = steps
    if max_seconds is not None:
        changes["train.max_seconds"] = max_seconds
    return spec.override(changes) if changes else spec


def _check_run_dir(out: Path, overwrite: bool) -> Path:
    """Check the run directory before any work, in the command line's terms: new or empty, or
    a run we may replace (``fit`` replaces it, keeping it until the new run has a checkpoint)."""
    from charseq.checkpoint import check_run_dir

    check_run_dir(out, overwrite, argument="--out", resume=f"--resume {out}", replace="--overwrite")
    existing = out  # where fit will create it: the nearest folder that exists must take it
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        why = "not a directory" if not existing.is_dir() else "not writable"
        raise CharseqError(f"cannot write to --out {out}: {existing} is {why}")
    return out


def _train_callbacks(progress: bool, sample_every: int) -> list:
    if sample_every < 0:
        raise CharseqError(f"--sample-every must be >= 0 (0: no samples), got {sample_every}")
    callbacks: list = [ProgressBar()] if progress else []
    if sample_every:
        callbacks.append(SampleEvery(sample_every, _print_sample))
    return callbacks


def _print_sample(step: int, text: str) -> None:
    click.secho(f"--- sample at step {step}", fg="cyan", err=True)
    click.echo(text, err=True)


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
forces the first character of each line (e.g. --acrostic 春夏秋冬 for a 藏头诗).
"""


@cli.command(epilog=_SAMPLE_EPILOG)
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
@click.option("--acrostic", help="Force the first character of each line, in order.")
@click.option("--num-samples", type=int, default=1, show_default=True, help="Samples to make.")
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="OPTION=VALUE",
    help="Any option of the sampler, e.g. --set length_penalty=0.8 (a plugin sampler's too; "
    "repeatable).",
)
@click.option(
    "--unknown",
    type=click.Choice(["error", "skip", "replace"]),
    help="What to do with prime characters outside the vocabulary (default: the tokenizer's).",
)
@click.option("--device", default=None, help="cpu, cuda, mps (default: the best found).")
@_clean_exits
def sample(
    checkpoint,
    prime,
    length,
    sampler,
    temperature,
    top_k,
    top_p,
    min_p,
    repetition_penalty,
    num_beams,
    num_return_sequences,
    seed,
    stops,
    allowed,
    acrostic,
    num_samples,
    settings,
    unknown,
    device,
) -> None:
    """Generate text from a checkpoint, streaming it to stdout as it is made: the prime first,
    then the new text (Pipeline.generate returns the new text alone)."""
    from charseq.pipeline import Pipeline

    options = {
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "min_p": min_p,
        "repetition_penalty": repetition_penalty,
        "num_beams": num_beams,
        "num_return_sequences": num_return_sequences,
    }
    kwargs = {
        "seed": seed,
        "stop": list(stops) or None,
        "allowed": allowed,
        "acrostic": acrostic,
        "unknown": unknown,
    }
    try:
        pipe = Pipeline.load(checkpoint, device=device)
        beam_options = num_beams is not None or num_return_sequences is not None
        if sampler is None and beam_options and pipe.spec.sampler.name != "beam":
            sampler = "beam"  # --num-beams means beam search
        section = pipe.sampler_section() if sampler is None else {"name": sampler}
        section.update({k: v for k, v in options.items() if v is not None})
        for setting in settings:
            key, value = _parse_setting(setting, "--set", "length_penalty=0.8")
            if key == "name":
                raise CharseqError("--set name=...: choose the sampler with --sampler")
            section[key] = value
        if num_samples == 1 and (num_return_sequences or 1) == 1:
            pieces = pipe.stream(prime, length, sampler=section, **kwargs)  # checked here
            click.echo(prime, nl=False)
            last = prime
            for piece in pieces:
                click.echo(piece, nl=False)
                sys.stdout.flush()
                last = piece or last
            if not last.endswith("\n"):  # end the line, unless the text did (--stop '\n')
                click.echo()
            return
        texts = pipe.generate(prime, length, sampler=section, num_samples=num_samples, **kwargs)
    except CharseqError as error:
        _fail(error)
    for i, text in enumerate(texts):
        click.secho(f"--- sample {i + 1}", fg="cyan", err=True)
        click.echo(prime + text)


@cli.command()
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
@click.option(
    "--unknown",
    type=click.Choice(["error", "skip", "replace"]),
    help="What to do with characters outside the vocabulary (default: the tokenizer's).",
)
@click.option("--device", default=None, help="cpu, cuda, mps (default: the best found).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@_clean_exits
def score(checkpoint, file, prime, top, unknown, device, as_json) -> None:
    """Score FILE (or - for stdin) under a checkpoint: total nats, BPC, surprising positions."""
    from charseq.pipeline import Pipeline

    try:
        text = file.read()
        pipe = Pipeline.load(checkpoint, device=device)
        result = pipe.score(text, prime=prime, top=top, unknown=unknown)
    except CharseqError as error:
        _fail(error)
    except UnicodeDecodeError as error:
        _fail(CharseqError(f"{file.name} is not UTF-8 text: {error}"))
    click.echo(json.dumps(result.to_dict()) if as_json else result.summary())


def _parse_setting(
    setting: str, flag: str = "--set", example: str = "cell.hidden_size=256"
) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as JSON where it parses (numbers, booleans), else a string."""
    key, sep, value = setting.partition("=")
    if not sep or not key.strip():
        raise CharseqError(f"{flag} {setting!r}: expected KEY=VALUE, e.g. {example}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value
    except ValueError:  # an integer longer than Python reads
        raise SpecError(key.strip(), TOO_MANY_DIGITS) from None


__all__ = ["cli", "main"]
