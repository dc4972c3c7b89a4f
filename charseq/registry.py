"""The plugin registry: loads entry points one at a time, records owners, looks components up.

Switches (arguments win over environment variables):

================================  ==========================================================
``CHARSEQ_STRICT_PLUGINS=1``      a plugin that fails to load raises instead of being recorded
``CHARSEQ_DISABLE_PLUGINS=a,b``   block these entry points or distributions
``CHARSEQ_ONLY_BUILTINS=1``       load charseq's own entry points only
``CHARSEQ_TRACE_PLUGINS=1``       log each entry point as it loads
================================  ==========================================================

charseq's own entry points are essential: they cannot be blocked.

Names. Every component is reachable by its qualified name ``distribution:name`` (e.g.
``charseq:lstm``, ``charseq-mgu:mgu``); the bare name (``lstm``) is what specs usually say. When
plugins of different distributions register one name of one kind, the bare name never goes by
load order: a built-in (charseq's own) keeps it, and the other registrations are reachable by
their qualified names only; between third-party plugins, none keeps it (the bare name is an
error listing the qualified ones). Either way each such registration is warned about, naming
both distributions, and in strict mode it is refused (an error). One distribution registering a
name twice is always refused.
"""

from __future__ import annotations

import importlib.metadata as metadata
import threading
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import pluggy

from charseq import hookspecs
from charseq.errors import (
    DuplicateComponentError,
    PluginLoadError,
    UnknownComponentError,
    did_you_mean,
    warn,
)
from charseq.options import NoOptions, check_registrable, describe_options
from charseq.plugin_loading import (
    BUILTIN_DISTRIBUTION,
    BlockedPlugin,
    LoadSwitches,
    PluginLoadFailure,
    canonical,
    distribution_of,
    entry_points_in_order,
    load_entry_point,
)

__all__ = [
    "BUILTIN_DISTRIBUTION",
    "REGISTRY_KINDS",
    "BlockedPlugin",
    "Component",
    "Owner",
    "PluginLoadFailure",
    "Registrar",
    "Registry",
    "get_registry",
    "reset_registry",
]


REGISTRY_KINDS: tuple[str, ...] = tuple(hookspecs.HOOKS)
"""Every kind the registry holds: the pipeline's (:data:`charseq.interfaces.KINDS`, the sections
of a spec and of a checkpoint's plugin record), then ``constraint`` (generation) and ``detector``
(:mod:`charseq.inspect`)."""


@attrs.frozen
class Owner:
    """Who registered a component: the plugin (entry point) name and its distribution."""

    plugin: str
    distribution: str
    version: str

    def __str__(self) -> str:
        version = f" {self.version}" if self.version else ""
        return f"{self.distribution}{version} (plugin {self.plugin!r})"


@attrs.frozen
class Component:
    """One registered implementation of a kind."""

    kind: str
    name: str
    factory: Callable[..., Any]
    options: type
    help: str
    owner: Owner

    @property
    def qualified_name(self) -> str:
        """``distribution:name``, which names this component whatever else is installed."""
        return f"{canonical(self.owner.distribution)}:{self.name}"

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (``charseq plugins --json``)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "qualified_name": self.qualified_name,
            "help": self.help,
            "distribution": self.owner.distribution,
            "version": self.owner.version,
            "plugin": self.owner.plugin,
            "status": "loaded",
            "options": describe_options(self.options),
        }


class Registrar:
    """What a hook receives: adds components of one kind, owned by one plugin."""

    def __init__(self, kind: str, owner: Owner) -> None:
        self.kind = kind
        self.owner = owner
        self.added: list[Component] = []

    def add(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        options: type | None = None,
        help: str | None = None,
    ) -> None:
        """Register ``factory`` under ``name``.

        Args:
            name: the name a spec uses, e.g. ``"lstm"``; lower case, digits, ``_`` and ``-``.
            factory: builds the component from its options (see the hook's documentation).
            options: a frozen attrs class declaring the options; none if omitted.
            help: one line for listings; defaults to the first line of the factory's docstring.

        Raises:
            TypeError: the options could not travel through a spec to the factory, checked here
                so that no run writes a checkpoint it cannot load: an option named ``name``
                (or, for a cell, ``input_size`` or a layout option such as ``hidden_size`` or
                ``dropout``; for an optimizer, ``parameters``); a type a spec cannot hold; a
                default not of its own type or failing its own check; an option the factory
                does not take.
        """
        if not name or not all(c.isalnum() or c in "_-" for c in name) or name != name.lower():
            raise ValueError(f"{self.kind} name {name!r}: use lower-case letters, digits, '_', '-'")
        options = NoOptions if options is None else options
        if not attrs.has(options):
            raise TypeError(
                f"{self.kind} {name!r}: options must be an attrs class, got {options!r}"
            )
        check_registrable(self.kind, name, factory, options)
        if help is None:
            doc = (getattr(factory, "__doc__", None) or "").strip()
            help = doc.splitlines()[0] if doc else ""
        self.added.append(Component(self.kind, name, factory, options, help, self.owner))


def _check_unmarked_hooks(plugin: object, owner: Owner, strict: bool) -> None:
    """Warn about (in strict mode: refuse) a function named after a hook but not marked
    ``@charseq.hookimpl``: pluggy never calls it, so its components would be missing without a
    word."""
    for hook_name in hookspecs.HOOKS.values():
        function = getattr(plugin, hook_name, None)
        if callable(function) and not hasattr(function, f"{hookspecs.PROJECT}_impl"):
            message = (
                f"charseq: plugin {owner.plugin!r} ({owner.distribution}) defines {hook_name} "
                "without @charseq.hookimpl, so it is never called; mark it"
            )
            if strict:
                raise PluginLoadError(message)
            warn(message)


class Registry:
    """All registered components, by kind and name, plus what failed or was blocked.

    Build one with :meth:`load` (entry points) or empty, and add plugins with :meth:`register`.
    """

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.plugin_manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.plugin_manager.add_hookspecs(hookspecs)
        # kind -> bare name -> the components of that name, one per distribution
        self._components: dict[str, dict[str, list[Component]]] = {
            kind: {} for kind in REGISTRY_KINDS
        }
        self.failures: list[PluginLoadFailure] = []
        self.blocked: list[BlockedPlugin] = []

    # -- building -----------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        *,
        strict: bool | None = None,
        block: Iterable[str] | None = None,
        only_builtins: bool | None = None,
    ) -> Registry:
        """A registry filled from the ``charseq`` entry points, one at a time.

        Args:
            strict: re-raise a plugin's import or registration error (default:
                ``CHARSEQ_STRICT_PLUGINS``). Otherwise it is recorded in :attr:`failures`,
                warned about, and the other plugins load.
            block: entry-point or distribution names not to load (default:
                ``CHARSEQ_DISABLE_PLUGINS``, comma separated). charseq's own cannot be blocked.
            only_builtins: load charseq's own entry points only
                (default: ``CHARSEQ_ONLY_BUILTINS``).
        """
        switches = LoadSwitches.from_env(strict=strict, block=block, only_builtins=only_builtins)
        registry = cls(strict=switches.strict)
        # 1) charseq's own entry points first (they must be there), then the others by name
        entry_points = entry_points_in_order(metadata.entry_points(group=hookspecs.PROJECT))
        for ep in entry_points:
            owner = Owner(ep.name, *distribution_of(ep))
            # 2) a plugin the switches exclude is recorded, not imported
            if reason := switches.why_skipped(owner):
                registry.blocked.append(BlockedPlugin(*attrs.astuple(owner), reason))
                continue
            # 3) import and register it; a failure is recorded (raised when strict)
            failure = load_entry_point(ep, owner, registry.register, switches)
            if failure is not None:
                registry.failures.append(failure)
        # 4) say which blocked names matched nothing, or named charseq's own
        switches.warn_about_blocks(entry_points)
        return registry

    def register(self, plugin: object, owner: Owner | str) -> None:
        """Register a plugin object (a module or any object with ``@hookimpl`` functions).

        All of the plugin's components are added, or none: a plugin whose hook raises, that
        registers one name twice, or whose distribution already registers one of its names,
        adds nothing; nor, in strict mode, does one that registers a name another distribution
        has, or has a hook function without ``@charseq.hookimpl``.

        A name another distribution has is otherwise warned about, naming both, and resolved
        whatever the order of registration: a built-in keeps its bare name; between
        third-party plugins no one keeps it; each stays reachable as ``distribution:name``.
        """
        if isinstance(owner, str):
            owner = Owner(owner, "<python>", "")
        if self.plugin_manager.is_registered(plugin):
            raise PluginLoadError(
                f"{plugin!r} is already registered (as "
                f"{self.plugin_manager.get_name(plugin)!r}); a plugin is registered once"
            )
        if self.plugin_manager.has_plugin(owner.plugin):
            raise PluginLoadError(f"a plugin named {owner.plugin!r} is already registered")
        _check_unmarked_hooks(plugin, owner, self.strict)
        self.plugin_manager.register(plugin, name=owner.plugin)
        try:
            self.plugin_manager.check_pending()
            added: list[Component] = []
            for kind, hook_name in hookspecs.HOOKS.items():
                hook = getattr(self.plugin_manager.hook, hook_name)
                for impl in hook.get_hookimpls():
                    if impl.plugin is plugin:
                        registrar = Registrar(kind, owner)
                        impl.function(registry=registrar)
                        added.extend(registrar.added)
            clashes = [c for c in (self._clash(c, added) for c in added) if c]
        except BaseException:
            self.plugin_manager.unregister(plugin)
            raise
        for component in added:  # kept in distribution order: nothing depends on load order
            same_name = self._components[component.kind].setdefault(component.name, [])
            same_name.append(component)
            same_name.sort(key=_distribution_order)
        for message in clashes:
            warn(f"charseq: {message}")

    def _clash(self, component: Component, batch: list[Component]) -> str | None:
        """Why ``component`` may not be added (raised), or what its name clashes with (a
        message to warn about), or ``None``."""
        kind, name = component.kind, component.name
        twins = [c for c in batch if c.kind == kind and c.name == name]
        existing = self._components[kind].get(name, [])
        dist = canonical(component.owner.distribution)
        same = [c for c in existing if canonical(c.owner.distribution) == dist]
        if len(twins) > 1 or same:
            first = (same or twins)[0]
            raise DuplicateComponentError(
                f"{kind} {name!r} is registered twice by one distribution: by {first.owner} "
                f"and by {component.owner}; uninstall or block one of them "
                "(CHARSEQ_DISABLE_PLUGINS)"
            )
        if not existing:
            return None
        everyone = sorted([*existing, component], key=_distribution_order)
        owners = " and by ".join(str(c.owner) for c in everyone)
        builtin = next((c for c in everyone if c.owner.distribution == BUILTIN_DISTRIBUTION), None)
        if builtin is not None:
            keeps = f"the built-in keeps the name {name!r}"
        else:
            keeps = f"no plugin keeps the name {name!r}"
        qualified = ", ".join(repr(c.qualified_name) for c in everyone if c is not builtin)
        message = (
            f"{kind} {name!r} is registered by {owners}: {keeps}; "
            f"name the other{'s' if len(everyone) - (builtin is not None) > 1 else ''} "
            f"{qualified}, or uninstall or block one (CHARSEQ_DISABLE_PLUGINS)"
        )
        if self.strict:
            raise DuplicateComponentError(message)
        return message

    # -- lookup -------------------------------------------------------------------------------

    def get(self, kind: str, name: str) -> Component:
        """The component ``name`` (or ``distribution:name``) of ``kind``, or an error saying why
        there is none.

        Raises:
            UnknownComponentError: no component answers to ``name``.
            DuplicateComponentError: plugins of several distributions register the bare
                ``name`` and none is charseq's own (the message lists their qualified names).
        """
        if kind not in self._components:
            raise UnknownComponentError(
                f"unknown kind {kind!r}; kinds: {', '.join(REGISTRY_KINDS)}"
            )
        distribution, colon, bare = name.rpartition(":")
        candidates = self._components[kind].get(bare, [])
        if colon:
            wanted = canonical(distribution)
            found = [c for c in candidates if canonical(c.owner.distribution) == wanted]
        else:
            found = [c for c in candidates if c.owner.distribution == BUILTIN_DISTRIBUTION]
            found = found or candidates
        if len(found) == 1:
            return found[0]
        if found:
            raise DuplicateComponentError(
                f"{kind} {name!r} is registered by "
                f"{' and by '.join(str(c.owner) for c in found)}, so no one has the name: "
                f"name one of {', '.join(repr(c.qualified_name) for c in found)}"
            )
        names = self.names(kind)
        if colon and candidates:
            hint = f"; did you mean {' or '.join(repr(c.qualified_name) for c in candidates)}?"
        else:
            hint = did_you_mean(name, names)
        message = f"unknown {kind} {name!r}{hint} (available: {', '.join(names)})"
        if self.failures:
            message += "; plugins that failed to load: " + "; ".join(map(str, self.failures))
        raise UnknownComponentError(message)

    def has(self, kind: str, name: str) -> bool:
        """Whether some component of ``kind`` answers to ``name`` (bare or qualified), even one
        that :meth:`get` refuses as ambiguous."""
        distribution, colon, bare = name.rpartition(":")
        candidates = self._components.get(kind, {}).get(bare, [])
        if not colon:
            return bool(candidates)
        return any(canonical(c.owner.distribution) == canonical(distribution) for c in candidates)

    def name_of(self, component: Component) -> str:
        """The name a spec uses for ``component``: its bare name where that name is its own,
        else its qualified name ``distribution:name``."""
        try:
            if self.get(component.kind, component.name) is component:
                return component.name
        except DuplicateComponentError:
            pass
        return component.qualified_name

    def names(self, kind: str) -> list[str]:
        """The names a spec can use for ``kind`` (one per component), sorted: bare names, and
        ``distribution:name`` for a component whose bare name is not its own."""
        return sorted(self.name_of(c) for c in self.components(kind))

    def components(self, kind: str | None = None) -> list[Component]:
        """Every registered component (of ``kind``), sorted by kind, name, then distribution."""
        kinds = REGISTRY_KINDS if kind is None else (kind,)
        return [
            component
            for k in kinds
            for name in sorted(self._components[k])
            for component in self._components[k][name]
        ]

    def describe(self) -> dict[str, Any]:
        """Everything ``charseq plugins --json`` prints (``name`` is what a spec uses)."""
        return {
            "components": [{**c.describe(), "name": self.name_of(c)} for c in self.components()],
            "failed": [
                {k: v for k, v in attrs.asdict(f).items() if k != "traceback"}
                for f in self.failures
            ],
            "blocked": [attrs.asdict(b) for b in self.blocked],
        }


_default: Registry | None = None
_lock = threading.Lock()


def get_registry(registry: Registry | None = None) -> Registry:
    """``registry`` if one is given, else the process-wide registry, loaded from entry points on
    first use."""
    global _default
    if registry is not None:
        return registry
    with _lock:
        if _default is None:
            _default = Registry.load()
        return _default


def reset_registry() -> None:
    """Forget the process-wide registry (it reloads, with current switches, on next use)."""
    global _default
    with _lock:
        _default = None


def _distribution_order(component: Component) -> str:
    return canonical(component.owner.distribution)
