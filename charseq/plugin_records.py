"""What a checkpoint records of its plugins, set against the plugins installed here: which are
missing, which a loaded pipeline can do without, and which changed version."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from charseq.checkpoint import CheckpointError
from charseq.errors import DuplicateComponentError, UnknownComponentError, warn
from charseq.registry import BUILTIN_DISTRIBUTION, Registry
from charseq.spec import ComponentSpec


def warn_version_drift(
    path: Path, registry: Registry, manifest: Mapping[str, Any], missing: Mapping[str, Any]
) -> None:
    """Warn when a plugin's installed version differs from the one that wrote the checkpoint
    (its components may compute or store things differently now)."""
    for kind, recorded in manifest.get("plugins", {}).items():
        if kind in missing or recorded.get("distribution") in (None, BUILTIN_DISTRIBUTION):
            continue
        owner = registry.get(kind, recorded_name(registry, kind, recorded)).owner
        if recorded.get("version") and owner.version != recorded.get("version"):
            warn(
                f"{path} was written with {kind} {recorded.get('name')!r} from "
                f"{source(recorded)}; {owner.distribution} {owner.version} is installed"
            )


@attrs.frozen
class Absent:
    """A component a loaded checkpoint names whose plugin is not installed: its spec section
    and owner as recorded, and the default standing in for it."""

    section: Any
    owner: dict[str, str]
    stand_in: ComponentSpec


NOT_NEEDED = ("optimizer", "sampler")
"""Kinds a loaded pipeline can sample and evaluate without."""


def missing_plugins(registry: Registry, manifest: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The components a checkpoint names that ``registry`` lacks: kind -> recorded owner."""
    return {
        kind: dict(owner)
        for kind, owner in manifest.get("plugins", {}).items()
        if not registry.has(kind, recorded_name(registry, kind, owner))
    }


def recorded_name(registry: Registry, kind: str, owner: Mapping[str, Any]) -> str:
    """The name to look the recorded component up by: its recorded name, or
    ``distribution:name`` where the bare name would find another distribution's component (or
    is shared by several) and the recorded distribution has one here."""
    name = str(owner.get("name"))
    distribution = owner.get("distribution")
    if ":" in name or not isinstance(distribution, str):
        return name
    qualified = f"{distribution}:{name}"
    if not registry.has(kind, qualified):
        return name
    try:
        if registry.get(kind, name) is registry.get(kind, qualified):
            return name
    except (UnknownComponentError, DuplicateComponentError):
        pass
    return qualified


def pinned_spec(registry: Registry, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's spec with each component named as :func:`recorded_name` finds it, so a
    checkpoint loads the plugins that wrote it, whatever else registers their names here."""
    data = dict(manifest.get("spec", {}))
    for kind, owner in manifest.get("plugins", {}).items():
        section = data.get(kind)
        if not isinstance(section, Mapping) or not isinstance(owner, Mapping):
            continue
        name = recorded_name(registry, kind, owner)
        if name != section.get("name") and section.get("name") == owner.get("name"):
            data[kind] = {**section, "name": name}
    return data


def source(owner: Mapping[str, Any]) -> str:
    parts = (owner.get("distribution"), owner.get("version"))
    return " ".join(str(part) for part in parts if part) or "an unknown plugin"


def refuse_missing(registry: Registry, missing: Mapping[str, Mapping[str, Any]]) -> None:
    for kind, owner in missing.items():
        name = owner.get("name")
        message = (
            f"this checkpoint needs {kind} {name!r} from {source(owner)}: "
            f"install the plugin that provides {kind} {name!r}"
        )
        if registry.failures:  # perhaps it is installed but failed to load
            failed = "; ".join(map(str, registry.failures))
            message += f"; plugins that failed to load: {failed}"
        blocked = [b for b in registry.blocked if b.distribution == owner.get("distribution")]
        if blocked:
            message += f" (it is installed but {blocked[0].reason})"
        raise CheckpointError(message)
