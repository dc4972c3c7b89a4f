"""What a checkpoint records of its plugins, set against the plugins installed here: which are
missing, which a loaded pipeline can do without, and which changed version."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from charseq.checkpoint import CheckpointError
from charseq.errors import warn
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
        owner = registry.get(kind, recorded.get("name")).owner
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
        if owner.get("name") not in registry.names(kind)
    }


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
