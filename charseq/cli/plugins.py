"""``charseq plugins``: every registered component with its owner and options, and the plugins
that failed to load or were blocked (the registry's own listing, as text or JSON)."""

from __future__ import annotations

import json

import click

from charseq.cli._errors import clean_exits
from charseq.cli._options import json_option
from charseq.options import format_default
from charseq.registry import get_registry

__all__ = ["plugins"]


@click.command()
@json_option()
@clean_exits
def plugins(as_json: bool) -> None:
    """List every registered component, its owner and options; and failed or blocked plugins."""
    registry = get_registry()
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
