"""Running the checks: ``parametrize_with_checks`` for pytest, ``check_component`` without it,
and ``check_plugin_installed`` for a distribution's entry points."""

from __future__ import annotations

import functools
import importlib.metadata as metadata
import sys
import unittest
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from charseq.errors import PluginLoadError, did_you_mean
from charseq.hookspecs import PROJECT
from charseq.registry import Component, Registry
from charseq.testing._base import BASES, CheckError, Subject, as_subject, require, resolve
from charseq.testing.checklist import CHECKS, all_checks, checks_for

__all__ = ["all_checks", "check_component", "check_plugin_installed", "parametrize_with_checks"]

ExpectedFailures = Mapping[str, Mapping[str, str]]


def _key(component: Component | Subject) -> str:
    return f"{component.kind}:{component.name}"


def _subject(component: Any, kind: str | None) -> Subject:
    """A Component, ``"kind:name"`` string or factory as a :class:`Subject`; a factory's kind is
    ``kind`` or, for a class (or a ``functools.partial`` of one), the plugin interface it
    subclasses."""
    if isinstance(component, str):
        if ":" not in component and kind is None:
            raise ValueError(f"expected 'kind:name', got {component!r} (e.g. 'cell:{component}')")
        component = resolve(component, kind)
    elif not isinstance(component, Component | Subject) and kind is None:
        cls = component.func if isinstance(component, functools.partial) else component
        if isinstance(cls, type):
            kind = next((k for k, base in BASES.items() if issubclass(cls, base)), None)
    return as_subject(component, kind)


def _subjects(components: Iterable[Any], kind: str | None) -> list[Subject]:
    if isinstance(components, str | Component) or callable(components):
        components = [components]
    return [_subject(component, kind) for component in components]


def _expected(
    expected_failed_checks: ExpectedFailures | None, components: list[Component | Subject]
) -> dict[str, Mapping[str, str]]:
    """Validate ``{"kind:name": {"check_x": "reason"}}``; typos fail loudly, not silently."""
    expected = dict(expected_failed_checks or {})
    keys = {_key(c) for c in components}
    for key, failures in expected.items():
        if key not in keys:
            raise ValueError(
                f"expected_failed_checks names {key!r}, which is not among the components "
                f"checked{did_you_mean(key, keys)} (checked: {', '.join(sorted(keys))})"
            )
        names = [check.__name__ for check in CHECKS[key.split(":", 1)[0]]]
        for name, reason in failures.items():
            if name not in names:
                raise ValueError(
                    f"expected_failed_checks[{key!r}] names {name!r}, which is not a check of "
                    f"its kind{did_you_mean(name, names)}"
                )
            if not isinstance(reason, str) or not reason:
                raise ValueError(f"expected_failed_checks[{key!r}][{name!r}]: give a reason")
    return expected


def parametrize_with_checks(
    components: Iterable[Component | str | Callable[..., Any]],
    expected_failed_checks: ExpectedFailures | None = None,
    *,
    kind: str | None = None,
) -> Any:
    """A ``pytest.mark.parametrize`` over every (component, check) pair.

    Args:
        components: registry :class:`~charseq.registry.Component` objects or ``"kind:name"``
            strings (looked up in :func:`charseq.get_registry`), of the kinds cell, tokenizer,
            sampler and constraint; or factories, as :func:`check_component` takes them, e.g.
            ``functools.partial(MyCell, activation="tanh")`` to check options other than the
            defaults.
        expected_failed_checks: ``{"cell:mgu": {"check_x": "why it fails"}}``; those pairs are
            marked ``xfail`` with the reason (non-strict). Unknown components or check names
            raise ``ValueError``.
        kind: what the factories build, where their class does not say.

    Test ids read ``cell:mgu-check_gradcheck``. A check that needs something the component
    lacks (e.g. ``check_top_k_support`` for a sampler without ``top_k``) is marked skipped with
    the reason. The decorated test receives ``component`` and ``check`` and calls
    ``check(component)``::

        from charseq.testing import parametrize_with_checks

        @parametrize_with_checks(["cell:mgu"])
        def test_conformance(component, check):
            check(component)
    """
    # function-local: only this decorator needs pytest; the checks run without it
    import pytest

    subjects = _subjects(components, kind)
    expected = _expected(expected_failed_checks, subjects)
    params = []
    for subject in subjects:
        key = _key(subject)
        for check, skip in checks_for(subject):
            marks = []
            reason = expected.get(key, {}).get(check.__name__)
            if reason is not None:
                marks.append(pytest.mark.xfail(reason=reason, strict=False))
            if skip is not None:
                marks.append(pytest.mark.skip(reason=skip))
            params.append(pytest.param(subject, check, id=f"{key}-{check.__name__}", marks=marks))
    return pytest.mark.parametrize(("component", "check"), params)


def check_component(
    component: Component | str | Callable[..., Any],
    expected_failed_checks: Mapping[str, str] | None = None,
    *,
    kind: str | None = None,
) -> dict[str, str]:
    """Run every check that applies to ``component``; raise one error listing all failures.

    Args:
        component: a registry Component, a ``"kind:name"`` string, or a factory (handy while
            writing one): a :class:`~charseq.Cell`, :class:`~charseq.Tokenizer`,
            :class:`~charseq.Sampler` or :class:`~charseq.constraints.Constraint` subclass, or
            any callable with ``kind`` given.
        expected_failed_checks: ``{"check_x": "reason"}``: those checks still run, but their
            failure is reported as expected instead of raised.
        kind: what a factory builds (``"cell"``, ``"tokenizer"``, ``"sampler"``,
            ``"constraint"``), where its class does not say.

    Returns:
        ``{check name: outcome}`` with outcomes ``"passed"``, ``"skipped: <why>"``,
        ``"expected failure: <reason>"`` or ``"passed (expected to fail: <reason>)"``.

    Raises:
        CheckError: naming every check that failed unexpectedly, with each one's message.
    """
    subject = _subject(component, kind)
    expected = _expected({_key(subject): expected_failed_checks or {}}, [subject])
    expected_here = expected.get(_key(subject), {})
    outcomes: dict[str, str] = {}
    failures: list[str] = []
    for check in CHECKS[subject.kind]:
        name = check.__name__
        reason = expected_here.get(name)
        try:
            check(subject)
        except unittest.SkipTest as skip:
            outcomes[name] = f"skipped: {skip}"
        except AssertionError as error:
            if reason is not None:
                outcomes[name] = f"expected failure: {reason}"
            else:
                outcomes[name] = "failed"
                failures.append(str(error))
        else:
            outcomes[name] = "passed" if reason is None else f"passed (expected to fail: {reason})"
    if failures:
        raise CheckError(
            f"{len(failures)} of {len(outcomes)} checks failed for {subject.label}:\n\n"
            + "\n\n".join(failures)
        )
    return outcomes


def check_plugin_installed(distribution_name: str) -> list[Component]:
    """Assert that an installed distribution's ``charseq`` entry points load and register.

    Loads a fresh :meth:`Registry.load(strict=True) <charseq.registry.Registry.load>` (no
    plugin blocked), so an import error, a hook error or a name clash with another installed
    plugin raises here with its cause.

    Returns:
        The components the distribution registered, sorted by kind and name, e.g.
        ``[c.kind + ":" + c.name for c in check_plugin_installed("charseq-mgu")]`` is
        ``["cell:mgu"]``.

    Raises:
        CheckError: the distribution is not installed, declares no ``charseq`` entry point,
            fails to load, or loads but registers nothing.
    """
    try:
        dist = metadata.distribution(distribution_name)
    except metadata.PackageNotFoundError:
        raise CheckError(
            f"distribution {distribution_name!r} is not installed in this environment "
            f"({sys.executable})",
            "install it, e.g. `pip install -e path/to/your-plugin` from a checkout.",
        ) from None
    label = f"{dist.metadata['Name']} {dist.version}"
    entry_points = [ep for ep in dist.entry_points if ep.group == PROJECT]
    require(
        bool(entry_points),
        f"{label} declares no entry point in the {PROJECT!r} group",
        f"add to its pyproject.toml\n\n    [project.entry-points.{PROJECT}]\n    "
        'myplugin = "my_module"\n\nand reinstall it: entry points are recorded at install '
        "time.",
    )
    try:
        registry = Registry.load(strict=True, block=(), only_builtins=False)
    except PluginLoadError as error:
        cause = error.__cause__
        own = any(f"plugin {ep.name!r} from" in str(error) for ep in entry_points)
        where = "its own" if own else "another installed distribution's"
        raise CheckError(
            f"loading the {PROJECT!r} entry points in strict mode failed on {where} plugin: "
            f"{error}",
            "import the module by hand (python -c 'import my_module') to see the full "
            "traceback; check that the hook functions are marked @charseq.hookimpl, take a "
            "`registry` argument, and register names no other plugin uses.",
        ) from (cause or error)
    # the registry names each component's owner by its distribution's own name (ep.dist.name),
    # the name `dist` has whichever spelling of it we were given
    added = [c for c in registry.components() if c.owner.distribution == dist.name]
    names = ", ".join(repr(ep.name) for ep in entry_points)
    require(
        bool(added),
        f"{label}'s entry point(s) {names} loaded but registered no component",
        "define module-level functions marked @charseq.hookimpl named after a hook "
        "(charseq_register_cells, _tokenizers, _optimizers, _samplers, _constraints or "
        "_detectors) that call "
        "registry.add(name, factory, options=OptionsClass).",
    )
    return added
