"""What a checkpoint records of its plugins, set against the plugins installed here: which are
missing, which a loaded pipeline can do without (and the defaults that stand in for them), and
which changed version."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from charseq.checkpoint import CheckpointError
from charseq.errors import CharseqError, DuplicateComponentError, UnknownComponentError, warn
from charseq.interfaces import KINDS
from charseq.registry import BUILTIN_DISTRIBUTION, Registry
from charseq.spec import ComponentSpec, PipelineSpec


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
                f"{describe_owner(recorded)}; {owner.distribution} {owner.version} is installed"
            )


@attrs.frozen
class Absent:
    """A component a loaded checkpoint names whose plugin is not installed: its spec section
    and owner as recorded, and the default standing in for it."""

    section: Any
    owner: dict[str, str]
    stand_in: ComponentSpec


OPTIONAL_FOR_SAMPLING = ("optimizer", "sampler")
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


def describe_owner(owner: Mapping[str, Any]) -> str:
    """A recorded owner as a message names it: ``"charseq-mgu 0.1"``."""
    parts = (owner.get("distribution"), owner.get("version"))
    return " ".join(str(part) for part in parts if part) or "an unknown plugin"


def refuse_missing(registry: Registry, missing: Mapping[str, Mapping[str, Any]]) -> None:
    for kind, owner in missing.items():
        name = owner.get("name")
        message = (
            f"this checkpoint needs {kind} {name!r} from {describe_owner(owner)}: "
            f"install the plugin that provides {kind} {name!r}"
        )
        if registry.failures:  # perhaps it is installed but failed to load
            failed = "; ".join(map(str, registry.failures))
            message += f"; plugins that failed to load: {failed}"
        blocked = [b for b in registry.blocked if b.distribution == owner.get("distribution")]
        if blocked:
            message += f" (it is installed but {blocked[0].reason})"
        raise CheckpointError(message)


OWN_SAMPLER = "sample with the checkpoint's own sampler"
"""What a stand-in sampler cannot do (the ``to`` of :meth:`StandIns.require`)."""


@attrs.define
class StandIns:
    """The components a loaded checkpoint names whose plugins are not installed here, each with
    the default that stands in for it (an optimizer or a sampler: sampling and evaluating need
    neither).

    A stand-in stands only while the spec still names it: a spec changed to another component
    (by name; a changed option does not count) is that component's.

    Attributes:
        absent: kind -> what the checkpoint recorded for it.
    """

    absent: dict[str, Absent] = attrs.Factory(dict)

    @classmethod
    def from_checkpoint(
        cls,
        manifest: Mapping[str, Any],
        spec: PipelineSpec,
        missing: Mapping[str, dict[str, str]],
    ) -> StandIns:
        """The stand-ins of a checkpoint loaded as ``spec`` (its ``missing`` kinds defaulted)."""
        recorded = manifest.get("spec", {})
        return cls(
            {
                kind: Absent(recorded.get(kind), owner, getattr(spec, kind))
                for kind, owner in missing.items()
            }
        )

    def standing_in(self, kind: str, spec: PipelineSpec) -> Absent | None:
        """What the checkpoint recorded for ``kind``, if its plugin is absent and ``spec`` still
        names the default that stands in for it."""
        absent = self.absent.get(kind)
        # By name: a changed option (lr, temperature) does not make the stand-in the choice.
        if absent is None or getattr(spec, kind).name != absent.stand_in.name:
            return None
        return absent

    def require(self, kind: str, spec: PipelineSpec, to: str) -> None:
        """Refuse to use a stand-in ``kind`` where the checkpoint's own component is needed
        ``to`` do something (``"train"``, :data:`OWN_SAMPLER`)."""
        absent = self.standing_in(kind, spec)
        if absent is not None:
            name = absent.owner.get("name")
            raise CharseqError(
                f"this pipeline was loaded without {kind} {name!r} from "
                f"{describe_owner(absent.owner)}, which is not installed: install it to {to}, or "
                f"choose another {kind}"
                + (" (sampler=...)" if kind == "sampler" else " in the spec"),
                argument="sampler" if kind == "sampler" else None,
            )

    def owners(self, spec: PipelineSpec, registry: Registry) -> dict[str, dict[str, str]]:
        """Who provides each component of ``spec``, as a checkpoint records it (a stand-in's
        kind: the owner the loaded checkpoint recorded)."""
        owners = {}
        for kind in KINDS:
            absent = self.standing_in(kind, spec)
            if absent is not None:
                owners[kind] = dict(absent.owner)
                continue
            section: ComponentSpec = getattr(spec, kind)
            owner = registry.get(kind, section.name).owner
            owners[kind] = {"name": section.name, **attrs.asdict(owner)}
        return owners

    def recorded_spec(self, spec: PipelineSpec) -> dict[str, Any]:
        """``spec`` as a checkpoint records it: a stand-in's section as it was loaded."""
        data = spec.to_dict()
        for kind in self.absent:
            absent = self.standing_in(kind, spec)
            if absent is not None and absent.section is not None:
                data[kind] = absent.section
        return data

    def warn_loaded(self, path: Path) -> None:
        """Say which plugins the checkpoint at ``path`` names that are not installed here, and
        what loading it without them allows."""
        if not self.absent:
            return
        named = " and ".join(
            f"{kind} {absent.owner.get('name')!r} from {describe_owner(absent.owner)}"
            for kind, absent in self.absent.items()
        )
        needs = " or ".join(
            "to train" if kind == "optimizer" else "to sample with its own sampler"
            for kind in self.absent
        )
        warn(
            f"{path} names {named}, not installed here: loaded to sample and evaluate; "
            f"install {'it' if len(self.absent) == 1 else 'them'} {needs}"
        )
