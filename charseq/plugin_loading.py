"""Loading plugins from entry points: the switches, the load order, and what failed or was
blocked.

:meth:`charseq.registry.Registry.load` tells the story; this module holds its parts. The switches
are described in :mod:`charseq.registry`.
"""

from __future__ import annotations

import importlib.metadata as metadata
import logging
import os
import re
import traceback
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import attrs

from charseq.errors import NotInstalledError, PluginLoadError, warn

if TYPE_CHECKING:
    from charseq.registry import Owner

log = logging.getLogger("charseq.registry")  # the logger the documentation names

BUILTIN_DISTRIBUTION = "charseq"


@attrs.frozen
class PluginLoadFailure:
    """A plugin that failed to import or register, kept for reporting."""

    plugin: str
    distribution: str
    version: str
    error: str
    traceback: str = attrs.field(repr=False, default="")

    def __str__(self) -> str:
        return (
            f"plugin {self.plugin!r} from {self.distribution} {self.version} failed: {self.error}"
        )


@attrs.frozen
class BlockedPlugin:
    """A plugin that was not loaded, and why (``"blocked"`` or ``"only builtins are loaded"``)."""

    plugin: str
    distribution: str
    version: str
    reason: str


@attrs.frozen
class LoadSwitches:
    """The four switches of a load, each from its argument or else its environment variable.

    Attributes:
        strict: a plugin that fails to load raises instead of being recorded.
        blocked: canonical entry-point or distribution names not to load.
        only_builtins: load charseq's own entry points only.
        trace: log each entry point as it loads, and where one failed.
    """

    strict: bool
    blocked: frozenset[str]
    only_builtins: bool
    trace: bool

    @classmethod
    def from_env(
        cls,
        *,
        strict: bool | None = None,
        block: Iterable[str] | None = None,
        only_builtins: bool | None = None,
    ) -> LoadSwitches:
        """The switches, an argument that is not ``None`` winning over its variable."""
        if block is None:
            block = os.environ.get("CHARSEQ_DISABLE_PLUGINS", "").split(",")
        return cls(
            strict=_env_flag("CHARSEQ_STRICT_PLUGINS") if strict is None else strict,
            blocked=frozenset(canonical(b) for b in block if b.strip()),
            only_builtins=(
                _env_flag("CHARSEQ_ONLY_BUILTINS") if only_builtins is None else only_builtins
            ),
            trace=_env_flag("CHARSEQ_TRACE_PLUGINS"),
        )

    def why_skipped(self, owner: Owner) -> str | None:
        """Why the plugin of ``owner`` is not loaded, or ``None`` to load it (charseq's own
        always load)."""
        if owner.distribution == BUILTIN_DISTRIBUTION:
            return None
        if self.only_builtins:
            return "only builtins are loaded"
        if self.blocked & {canonical(owner.plugin), canonical(owner.distribution)}:
            return "blocked"
        return None

    def warn_about_blocks(self, entry_points: Iterable[metadata.EntryPoint]) -> None:
        """Warn about blocked names that match no installed plugin, and about blocking
        charseq's own."""
        builtin: set[str] = set()
        others: set[str] = set()
        for ep in entry_points:
            distribution = distribution_of(ep)[0]
            names = {canonical(ep.name), canonical(distribution)}
            (builtin if distribution == BUILTIN_DISTRIBUTION else others).update(names)
        if not self.only_builtins and (unmatched := sorted(self.blocked - others - builtin)):
            warn(
                f"charseq: CHARSEQ_DISABLE_PLUGINS (or block=) names {', '.join(unmatched)}, "
                "which no installed plugin or distribution has (see `charseq plugins`)"
            )
        if self.blocked & builtin:
            warn("charseq: charseq's own plugins cannot be blocked")


def entry_points_in_order(
    entry_points: Iterable[metadata.EntryPoint],
) -> list[metadata.EntryPoint]:
    """charseq's own entry points first, then the others, each group by name.

    Raises:
        NotInstalledError: charseq's own are missing (a checkout imported without installing).
    """
    ordered = sorted(
        entry_points, key=lambda ep: (distribution_of(ep)[0] != BUILTIN_DISTRIBUTION, ep.name)
    )
    if not any(distribution_of(ep)[0] == BUILTIN_DISTRIBUTION for ep in ordered):
        raise NotInstalledError(
            "charseq's built-in plugins are not registered: charseq is imported from a "
            "checkout that is not installed. Run `pip install -e .` in the repository."
        )
    return ordered


def distribution_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    """The name and version of the distribution that declares ``ep``."""
    if ep.dist is None:
        return "<unknown>", ""
    return ep.dist.name, ep.dist.version


def load_entry_point(
    ep: metadata.EntryPoint,
    owner: Owner,
    register: Callable[[object, Owner], None],
    switches: LoadSwitches,
) -> PluginLoadFailure | None:
    """Import the plugin ``ep`` names and ``register`` it as ``owner``'s.

    Returns:
        ``None``, or the failure (also warned about) of a plugin that did not import or register.

    Raises:
        PluginLoadError: it failed and the load is strict.
    """
    if switches.trace:
        log.warning(
            "charseq: loading plugin %r from %s %s", owner.plugin, owner.distribution, owner.version
        )
    try:
        register(ep.load(), owner)
    except Exception as error:
        if switches.trace:  # where it failed, for the plugin's author
            log.warning("charseq: plugin %r failed:\n%s", owner.plugin, traceback.format_exc())
        if switches.strict:
            raise PluginLoadError(
                f"plugin {owner.plugin!r} from {owner.distribution}: "
                f"{type(error).__name__}: {error}"
            ) from error
        failure = PluginLoadFailure(
            owner.plugin,
            owner.distribution,
            owner.version,
            f"{type(error).__name__}: {error}",
            traceback.format_exc(),
        )
        warn(f"charseq: {failure}")
        return failure
    return None


def canonical(name: str) -> str:
    """A distribution or entry-point name compared as pip compares them: case, and runs of
    ``-``, ``_`` and ``.``, do not matter (``charseq_extras`` is ``Charseq-Extras``)."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
