"""The ``charseq`` command: a thin shell over the Python API."""

from __future__ import annotations

import json
import sys

import click

from charseq.errors import CharseqError
from charseq.pipeline import Callback
from charseq.registry import get_registry


def main() -> None:
    """Entry point of the ``charseq`` script."""
    cli(prog_name="charseq")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="charseq")
def cli() -> None:
    """charseq: pluggable character-level sequence models."""


def _fail(error: Exception) -> None:
    raise click.ClickException(str(error)) from None


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
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
            f"  {component.name:<12} {component.help}  [{owner.distribution} {owner.version}]"
        )
        for option in component.describe()["options"]:
            click.echo(
                f"      {option['name']} ({option['type']}, default {option['default']!r}): "
                f"{option['help']}"
            )
    for failure in registry.failures:
        click.secho(f"failed: {failure}", fg="red")
    for blocked in registry.blocked:
        click.echo(f"not loaded: {blocked.plugin} ({blocked.distribution}): {blocked.reason}")


@cli.command()
@click.option(
    "--spec", "spec_path", type=click.Path(dir_okay=False), help="Spec file (.toml/.json)."
)
@click.option(
    "--data",
    "data_path",
    type=click.Path(),
    help="Text file to train on (default: Python's own standard-library source, no download).",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a spec value, e.g. --set cell.hidden_size=256 (repeatable).",
)
@click.option("--steps", type=int, help="Optimizer steps (overrides train.steps).")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="runs/latest",
    show_default=True,
    help="Checkpoint directory to write.",
)
@click.option("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda if available).")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def train(spec_path, data_path, settings, steps, out_dir, device, progress) -> None:
    """Train a model and save a checkpoint."""
    from charseq.data import python_source_corpus, read_text
    from charseq.pipeline import Pipeline
    from charseq.spec import PipelineSpec

    try:
        spec = PipelineSpec.from_file(spec_path) if spec_path else PipelineSpec.from_dict({})
        if settings:
            spec = spec.override(dict(_parse_setting(s) for s in settings))
        if steps is not None:
            spec = spec.override({"train.steps": steps})
        text = read_text(data_path) if data_path else python_source_corpus()
        pipe = Pipeline.from_spec(spec, device=device)
        callbacks = [_ProgressBar()] if progress else []
        pipe.fit(text, callbacks=callbacks)
        path = pipe.save(out_dir)
    except CharseqError as error:
        _fail(error)
    click.echo(f"saved {path} (step {pipe.step})", err=True)


@cli.command()
@click.argument("checkpoint", type=click.Path(file_okay=False))
@click.option("--prime", default="", help="Text to start from.")
@click.option("--length", default=500, show_default=True, help="Characters to generate.")
@click.option("--sampler", default=None, help="greedy, temperature, beam, or a plugin's sampler.")
@click.option("--temperature", type=float, help="Sampling temperature (temperature sampler).")
@click.option("--top-k", type=int, help="Keep the k most likely characters (temperature sampler).")
@click.option("--top-p", type=float, help="Nucleus sampling mass (temperature sampler).")
@click.option("--num-beams", type=int, help="Beam width (beam sampler).")
@click.option("--seed", type=int, help="Random seed for reproducible output.")
@click.option("--num-samples", type=int, default=1, show_default=True, help="Samples to make.")
@click.option("--device", default=None, help="cpu, cuda, mps (default: cuda if available).")
def sample(
    checkpoint,
    prime,
    length,
    sampler,
    temperature,
    top_k,
    top_p,
    num_beams,
    seed,
    num_samples,
    device,
) -> None:
    """Generate text from a checkpoint."""
    from charseq.pipeline import Pipeline

    try:
        pipe = Pipeline.load(checkpoint, device=device)
        section = pipe.spec.sampler.to_dict() if sampler is None else {"name": sampler}
        given = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "num_beams": num_beams}
        section.update({k: v for k, v in given.items() if v is not None})
        texts = pipe.generate(prime, length, sampler=section, seed=seed, num_samples=num_samples)
    except CharseqError as error:
        _fail(error)
    for i, text in enumerate(texts):
        if num_samples > 1:
            click.secho(f"--- sample {i + 1}", fg="cyan", err=True)
        click.echo(prime + text)


def _parse_setting(setting: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as JSON where it parses (numbers, booleans), else a string."""
    key, sep, value = setting.partition("=")
    if not sep or not key:
        raise CharseqError(f"--set {setting!r}: expected KEY=VALUE, e.g. cell.hidden_size=256")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


class _ProgressBar(Callback):
    """A tqdm progress bar as a fit callback."""

    def on_fit_start(self, pipeline, steps: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=steps, unit="step", file=sys.stderr, dynamic_ncols=True)

    def on_step_end(self, pipeline, step: int, metrics: dict[str, float]) -> None:
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{metrics['loss']:.3f}", refresh=False)

    def on_fit_end(self, pipeline, step: int) -> None:
        self.bar.close()


__all__ = ["cli", "main"]
