"""``charseq train``: a new run from a spec and a corpus, or the continuation of one (``--resume``).

With ``--task classify`` (or a spec whose task is ``classify``) ``--data`` names one labelled
file or directory (TSV, CSV, JSONL, a folder of one file per label:
:mod:`charseq.classify.data`), and the run trains a classifier.

The command turns flags into a :class:`~charseq.spec.PipelineSpec` and a list of sources and
hands them to :meth:`Pipeline.fit <charseq.pipeline.Pipeline.fit>`, or hands the run directory to
:meth:`Pipeline.resume <charseq.pipeline.Pipeline.resume>`. What it adds is the command line's own
rules: which flags a resume refuses, and that ``--out`` can be written before any work starts.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

from charseq import distributed
from charseq.callbacks import Callback, ProgressBar, SampleEvery
from charseq.checkpoint import check_run_dir
from charseq.cli._errors import clean_exits
from charseq.cli._launch import launch
from charseq.cli._options import (
    NORMALIZATIONS,
    column_options,
    data_option,
    device_option,
    parse_setting,
    set_option,
)
from charseq.corpus import STDIN, find_sources, python_source_files
from charseq.corpus.sources import Source
from charseq.devices import resolve_device
from charseq.errors import CharseqError
from charseq.persist import is_classifier
from charseq.pipeline import Pipeline
from charseq.spec import PipelineSpec, presets

__all__ = ["train"]


@click.command()
@click.option(
    "--spec", "spec_path", type=click.Path(dir_okay=False), help="Spec file (.toml/.json)."
)
@click.option("--preset", help="A spec shipped with charseq: " + ", ".join(presets()) + ".")
@data_option(
    "Text file, directory or - (stdin); repeatable. Default: Python's own standard-library "
    "source (no download). With --resume: the run's corpus, needed only if RUN/cache is gone."
)
@click.option(
    "--task",
    type=click.Choice(["lm", "classify"]),
    help="lm: a language model (the default); classify: one label per text of --data.",
)
@column_options("classify: ")
@click.option(
    "--init-from",
    type=click.Path(),
    help="classify: start from this language model's run (its tokenizer, embedding and cells).",
)
@click.option("--include", multiple=True, metavar="GLOB", help="Files to take from directories.")
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of --data.")
@click.option("--normalize", type=click.Choice(NORMALIZATIONS), help="Unicode normalisation.")
@set_option("Override a spec value", "cell.hidden_size=256", "KEY=VALUE")
@click.option("--steps", type=int, metavar="N", help="Optimizer steps (overrides train.steps).")
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
@device_option()
@click.option(
    "--nproc",
    type=int,
    metavar="N",
    help="Train on N processes of this machine, as torchrun --nproc-per-node N would "
    "(train.batch_size is the global batch; resume with the same N).",
)
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@click.option(
    "--print-spec",
    is_flag=True,
    help="Print the spec these options make (every option, as TOML) and exit without training.",
)
@clean_exits
def train(
    spec_path: str | None,
    preset: str | None,
    data_paths: tuple[str, ...],
    task: str | None,
    text_column: str | None,
    label_column: str | None,
    init_from: str | None,
    include: tuple[str, ...],
    encoding: str,
    normalize: str | None,
    settings: tuple[str, ...],
    steps: int | None,
    max_seconds: float | None,
    out_dir: str,
    resume_dir: str | None,
    overwrite: bool,
    sample_every: int,
    device: str | None,
    nproc: int | None,
    progress: bool,
    print_spec: bool,
) -> None:
    """Train a model, writing checkpoints to a run directory (Ctrl-C saves and stops).

    Under torchrun (or with --nproc) every process runs this command; rank 0 writes the run.
    """
    if task and not resume_dir:
        settings = (f"task.name={task}", *settings)
    if print_spec:
        if resume_dir:
            raise CharseqError("--print-spec shows a new run's spec: drop --resume")
        spec = _spec(spec_path, preset, settings, steps, max_seconds)
        if (job := distributed.detect()) is None or job.rank == 0:  # one copy under torchrun
            click.echo(spec.to_toml(), nl=False)
        return
    if nproc is not None:
        if distributed.detect() is not None:
            raise CharseqError("--nproc starts torchrun, and this already runs under it: drop it")
        launch(nproc)
    world = distributed.init(resolve_device(device))  # one process: SINGLE
    if world.distributed and STDIN in data_paths:
        raise CharseqError(
            "--data - (standard input) reaches one process only: save it to a file for a "
            "torchrun job"
        )
    quiet = not world.is_main  # rank 0 speaks for the job
    callbacks = _train_callbacks(progress and not quiet, sample_every)
    if resume_dir:
        _check_resume_flags(bool(spec_path or preset or settings or task), overwrite)
        labelled = is_classifier(resume_dir)
        if labelled and len(data_paths) != 1:
            raise CharseqError(
                f"{resume_dir} is a classifier's run: give --data, the labelled file it was "
                "trained on"
            )
        pipe = Pipeline.resume(
            resume_dir,
            files=None if labelled else list(data_paths) or None,
            data=data_paths[0] if labelled else None,
            steps=steps,
            max_seconds=max_seconds,
            callbacks=callbacks,  # the run directory gets metrics.jsonl
            handle_signals=True,
            device=device,
        )
    elif (spec := _spec(spec_path, preset, settings, steps, max_seconds)).task.name == "classify":
        if len(data_paths) != 1:
            raise CharseqError(
                "a classifier trains on one labelled file or directory: --data labelled.tsv "
                "(text and label columns; or JSONL, or a folder of one file per label)"
            )
        if sample_every:
            raise CharseqError("--sample-every samples a language model; a classifier has none")
        run_dir = _check_run_dir(Path(out_dir), overwrite, world)
        pipe = Pipeline.from_spec(spec, device=device)
        pipe.fit(
            data=data_paths[0], text_column=text_column, label_column=label_column,
            init_from=init_from, encoding=encoding, out=run_dir, overwrite=overwrite,
            callbacks=callbacks, handle_signals=True,
        )  # fmt: skip
    else:
        if init_from:
            raise CharseqError("--init-from starts a classifier: add --task classify")
        include = include or ("*",)
        sources = find_sources(
            list(data_paths) or python_source_files(), include, encoding=encoding
        )
        run_dir = _check_run_dir(Path(out_dir), overwrite, world)
        if progress and not quiet:
            click.echo(_describe_corpus(sources, given=bool(data_paths)), err=True)
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
    result = pipe.last_run
    if quiet:
        sys.exit(130 if result.reason == "interrupted" else 0)
    best = ""
    if result.best_val_bpc is not None:
        best = f", best val BPC {result.best_val_bpc:.4f}"
    elif result.best is not None:
        best = f", best {result.best_metric.replace('_', ' ')} {result.best:.4f}"
    click.echo(
        f"stopped at step {result.step} ({result.reason}){best}; checkpoint {result.checkpoint}",
        err=True,
    )
    run_dir = resume_dir or out_dir  # the figure goes beside it: overwrite= refuses strangers
    figure = shlex.quote(f"{Path(run_dir).resolve().name}-curves.png")
    click.echo(f"training curves: charseq plot {shlex.quote(run_dir)} -o {figure}", err=True)
    if result.reason == "interrupted":
        sys.exit(130)


def _check_resume_flags(new_spec: bool, overwrite: bool) -> None:
    """Refuse the flags that would change the run ``--resume`` continues as it was: a spec
    (``--spec``, ``--preset``, ``--set``), another run directory (``--out``) or ``--overwrite``."""
    if new_spec:
        raise CharseqError("--resume continues a run as it was: drop --spec/--preset/--set/--task")
    given = click.get_current_context().get_parameter_source("out_dir")
    if given is click.core.ParameterSource.COMMANDLINE or overwrite:
        raise CharseqError("--resume writes into the run it continues: drop --out and --overwrite")


def _spec(
    spec_path: str | None,
    preset: str | None,
    settings: tuple[str, ...],
    steps: int | None,
    max_seconds: float | None,
) -> PipelineSpec:
    """The spec a new run's flags make: a file, a preset or the defaults, then ``--set``,
    ``--steps`` and ``--max-seconds`` over it."""
    if spec_path and preset:
        raise CharseqError("give --spec or --preset, not both")
    if preset:
        spec = PipelineSpec.from_preset(preset)
    elif spec_path:
        spec = PipelineSpec.from_file(spec_path)
    else:
        spec = PipelineSpec.from_dict({})
    changes = dict(parse_setting(s) for s in settings)
    if steps is not None:
        changes["train.steps"] = steps
    if max_seconds is not None:
        changes["train.max_seconds"] = max_seconds
    return spec.override(changes) if changes else spec


def _check_run_dir(out: Path, overwrite: bool, world: distributed.World) -> Path:
    """Check the run directory before any work, in the command line's terms: new or empty, or
    a run we may replace (``fit`` replaces it, keeping it until the new run has a checkpoint).
    Rank 0's to check in a torchrun job (its failure stops every rank)."""
    distributed.on_every_rank(
        world, f"use --out {out}", lambda: _check_out(out, overwrite) if world.is_main else None
    )
    return out


def _check_out(out: Path, overwrite: bool) -> None:
    check_run_dir(out, overwrite)  # its errors name out=, overwrite=: error_line shows the flags
    existing = out  # where fit will create it: the nearest folder that exists must take it
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        why = "not a directory" if not existing.is_dir() else "not writable"
        raise CharseqError(f"cannot write to --out {out}: {existing} is {why}")


def _train_callbacks(progress: bool, sample_every: int) -> list[Callback]:
    if sample_every < 0:
        raise CharseqError(f"--sample-every must be >= 0 (0: no samples), got {sample_every}")
    callbacks: list[Callback] = [ProgressBar()] if progress else []
    if sample_every:
        callbacks.append(SampleEvery(sample_every, _print_sample))
    return callbacks


def _print_sample(step: int, text: str) -> None:
    click.secho(f"--- sample at step {step}", fg="cyan", err=True)
    click.echo(text, err=True)


def _describe_corpus(sources: list[Source], *, given: bool) -> str:
    """One line saying what the run trains on: "corpus: 3 files, 1.1 MB ..."."""
    files = [Path(source) for source in sources if source != STDIN]
    size = sum(path.stat().st_size for path in files)
    amount = f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"
    what = f"{len(files)} file{'s' if len(files) != 1 else ''}, {amount}"
    if STDIN in sources:
        what += " and standard input"
    if not given:
        where = files[0].parent if files else "?"
        return f"corpus: Python's own standard-library source ({what} under {where}; no --data)"
    return f"corpus: {what}"
