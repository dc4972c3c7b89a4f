"""What every check shares: the error it raises, the subject it checks, the decorator that makes
a check, and the small helpers of check bodies.

A *subject* is what a check runs on. Checks accept any of:

- a registry :class:`~charseq.registry.Component` (built with its default options);
- a string ``"kind:name"`` (or a bare ``"name"`` of the check's own kind), looked up in
  :func:`charseq.get_registry`;
- a plain factory: ``make_cell(input_size, hidden_size, **options)``,
  ``make_tokenizer(**options)``, ``make_sampler(**options)`` or
  ``make_constraint(**options)``.
"""

from __future__ import annotations

import functools
import inspect
import textwrap
import unittest
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import torch
from hypothesis import Phase, settings

from charseq.constraints import Constraint
from charseq.interfaces import Cell, Sampler, Tokenizer
from charseq.registry import REGISTRY_KINDS, Component, get_registry
from charseq.testing.tags import TAGS, compute_tags, document_tags, not_applicable

__all__ = [
    "BASES",
    "CHECKED_KINDS",
    "REGISTERED",
    "CheckError",
    "CheckSkipped",
    "Subject",
    "as_subject",
    "assert_close",
    "describe",
    "get_tags",
    "kit_settings",
    "register_check",
    "require",
    "resolve",
]

BASES: dict[str, type] = {
    "cell": Cell,
    "tokenizer": Tokenizer,
    "sampler": Sampler,
    "constraint": Constraint,
}
"""The kinds the kit has checks for, and the plugin interface each kind's factories build."""

CHECKED_KINDS = tuple(BASES)
"""The kinds the kit has checks for."""

_HOW_TO_SUBCLASS = {
    "cell": "subclass charseq.Cell and write initial_state() and step().",
    "tokenizer": "subclass charseq.Tokenizer and write vocab_size, encode, decode, state_dict "
    "and load_state_dict.",
    "sampler": "subclass charseq.TokenSampler (write select) or charseq.Sampler (write sample).",
    "constraint": "subclass charseq.constraints.TextConstraint (write allowed_next) or "
    "charseq.constraints.Constraint (write compile, and its compiled form and tracker).",
}


class CheckError(AssertionError):
    """A conformance check failed. The message says what failed and how to fix it.

    Attributes:
        check: the name of the check, e.g. ``"check_gradcheck"``.
        subject: the component it ran on, e.g. ``"cell 'mgu' (charseq-mgu 0.1.0 ...)"``.
        problem: what was wrong.
        fix: how to make the check pass.
    """

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        self.check: str | None = None
        self.subject: str | None = None
        super().__init__(self._render())

    def add_context(self, check: str, subject: str) -> None:
        """Name the check and the component in the message (done once, by the check runner)."""
        if self.check is None:
            self.check, self.subject = check, subject
            # re-rendered, not a note: the heading goes above the (indented) problem, and
            # pytest shows str(error) first
            self.args = (self._render(),)

    def _render(self) -> str:
        lines = []
        if self.check is not None:
            lines.append(f"charseq.testing.{self.check} failed for {self.subject}:")
        lines.append(textwrap.indent(self.problem, "  ") if self.check else self.problem)
        if self.fix:
            lines.append(f"How to fix: {self.fix}")
        return "\n".join(lines)


class CheckSkipped(unittest.SkipTest):
    """A check does not apply to this component (pytest reports it as skipped)."""


class Subject:
    """A component under test: how to build it, its default options and its tags.

    Use :func:`as_subject` rather than building one directly.
    """

    def __init__(
        self,
        kind: str,
        name: str,
        label: str,
        factory: Callable[..., Any],
        options_class: type | None = None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.label = label
        self.factory = factory
        self.options_class = options_class
        defaults = attrs.asdict(options_class(), recurse=False) if options_class else {}
        self.defaults: Mapping[str, Any] = defaults
        self.option_names = frozenset(defaults) if options_class else _keyword_names(factory, kind)

    def __repr__(self) -> str:
        return f"<Subject {self.label}>"

    def options(self, **overrides: Any) -> dict[str, Any]:
        """Default options with ``overrides``; validated by the options class when there is one.

        Raises ``ValueError`` or ``TypeError`` when the options class rejects a value.
        """
        merged = {**self.defaults, **overrides}
        if self.options_class is not None:
            return attrs.asdict(self.options_class(**merged), recurse=False)
        return merged

    def build(self, *args: Any, **overrides: Any) -> Any:
        """Call the factory with ``args`` and the default options updated by ``overrides``."""
        return self.factory(*args, **self.options(**overrides))

    def try_options(self, **overrides: Any) -> dict[str, Any]:
        """:meth:`options`, or :class:`CheckSkipped` when the options class rejects a value."""
        try:
            return self.options(**overrides)
        except (ValueError, TypeError) as error:
            raise CheckSkipped(f"{self.label} does not accept {overrides}: {error}") from None

    def accepts(self, **overrides: Any) -> bool:
        """Whether the options class (if any) accepts ``overrides``."""
        try:
            self.options(**overrides)
        except (ValueError, TypeError):
            return False
        return True

    def build_checked(self, *args: Any, **overrides: Any) -> Any:
        """:meth:`build`, held to the kind's plugin interface.

        Raises :class:`CheckSkipped` when the options class rejects ``overrides``, and
        :class:`CheckError` when the factory returns something that is not a ``charseq.Cell``
        (``Tokenizer``, ``Sampler``).
        """
        if overrides:
            self.try_options(**overrides)
        built = self.build(*args, **overrides)
        base = BASES[self.kind]
        require(
            isinstance(built, base),
            f"the factory returned {type(built).__name__}, not a charseq.{base.__name__}",
            _HOW_TO_SUBCLASS[self.kind],
        )
        return built

    @functools.cached_property
    def tags(self) -> dict[str, Any]:
        """What the kit knows about the component (see :func:`get_tags`)."""
        return compute_tags(self)


def as_subject(component: Any, kind: str | None = None) -> Subject:
    """Turn a Component, a ``"kind:name"`` string or a factory into a :class:`Subject`."""
    if isinstance(component, Subject):
        if kind is not None and component.kind != kind:
            raise TypeError(f"a {kind} check was given {component.label}")
        return component
    if isinstance(component, str):
        component = resolve(component, kind)
    if isinstance(component, Component):
        if kind is not None and component.kind != kind:
            raise TypeError(
                f"a {kind} check was given {component.kind} {component.name!r}; "
                "parametrize_with_checks and check_component pick each kind's checks"
            )
        if component.kind not in CHECKED_KINDS:
            raise ValueError(
                f"charseq.testing has no checks for kind {component.kind!r} "
                f"(checked kinds: {', '.join(CHECKED_KINDS)})"
            )
        label = f"{component.kind} {component.name!r} ({component.owner})"
        return Subject(component.kind, component.name, label, component.factory, component.options)
    if callable(component):
        if kind is None:
            raise TypeError(
                f"cannot tell which kind {component!r} builds; pass kind='cell' (or "
                "'tokenizer', 'sampler', 'constraint'), a registry Component or a 'kind:name' "
                "string, or call the kind's checks directly"
            )
        name = _factory_name(component)
        return Subject(kind, name, f"{kind} {name}", component)
    raise TypeError(
        f"expected a charseq Component, a 'kind:name' string or a factory, got {component!r}"
    )


def _factory_name(factory: Any) -> str:
    """``MyCell``, or ``MyCell(activation='tanh')`` for a ``functools.partial``."""
    if isinstance(factory, functools.partial):
        arguments = [repr(a) for a in factory.args]
        arguments += [f"{k}={v!r}" for k, v in factory.keywords.items()]
        return f"{_factory_name(factory.func)}({', '.join(arguments)})"
    return getattr(factory, "__qualname__", None) or type(factory).__qualname__


def resolve(spec: str, kind: str | None = None) -> Component:
    """Look ``"kind:name"`` (or ``"name"`` when ``kind`` is given) up in the global registry.

    ``name`` may be qualified, ``distribution:name`` (``"cell:charseq-mgu:mgu"``).
    """
    if ":" in spec and spec.split(":", 1)[0] in REGISTRY_KINDS:
        kind, name = spec.split(":", 1)
    elif kind is None:
        raise ValueError(f"name components as 'kind:name', e.g. 'cell:{spec}'; got {spec!r}")
    else:
        name = spec
    return get_registry().get(kind, name)


def get_tags(component: Any, kind: str | None = None) -> dict[str, Any]:
    """The tags of a component: what it supports, which decides the checks that apply.

    Tags are worked out from the component itself (its class and its options); a component may
    refine them by defining ``__charseq_tags__(self) -> dict`` on the object its factory returns.
    """
    return dict(as_subject(component, kind).tags)


# the tags' own lines, from the one table of tags (charseq.testing.tags.TAGS)
get_tags.__doc__ = f"{inspect.cleandoc(get_tags.__doc__ or '')}\n\n{document_tags()}\n"


def _keyword_names(factory: Callable[..., Any], kind: str) -> frozenset[str]:
    """Option names of a plain factory: its keyword parameters (cells: after the two sizes)."""
    try:
        parameters = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return frozenset()
    if kind == "cell":
        parameters = parameters[2:]
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(p.name for p in parameters if p.kind in kinds)


# -- making a check -------------------------------------------------------------------------------

REGISTERED: list[Callable[..., None]] = []
"""Every check made by :func:`register_check`; :mod:`charseq.testing.checklist` orders them."""


def register_check(kind: str, *, requires: tuple[str, ...] = ()) -> Callable[..., Any]:
    """Decorate a check body ``body(subject, **kwargs)`` into a public check.

    The public check accepts any subject (:func:`as_subject`), skips when a required tag is
    missing, runs with the global torch RNG forked (it leaves the caller's seed alone) and turns
    any exception into a :class:`CheckError` naming the check and the component.
    """
    unknown = [tag for tag in requires if tag not in TAGS or TAGS[tag].kind != kind]
    if unknown:  # every tag a check needs is in the one table, which describes it
        raise ValueError(f"no {kind} tag {', '.join(map(repr, unknown))} in charseq.testing.tags")

    def decorate(body: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(body)
        def check(component: Any, **kwargs: Any) -> None:
            subject = as_subject(component, kind)
            name = body.__name__
            try:
                reason = not_applicable(check, subject)
            except Exception as error:
                raise _crashed(error, "building it to read its tags", name, subject) from error
            if reason is not None:
                raise CheckSkipped(reason)
            with torch.random.fork_rng():
                try:
                    body(subject, **kwargs)
                except CheckError as error:
                    error.add_context(name, subject.label)
                    raise
                except unittest.SkipTest:
                    raise
                except Exception as error:
                    raise _crashed(error, "running the check", name, subject) from error

        check.kind = kind  # type: ignore[attr-defined]
        check.requires = requires  # type: ignore[attr-defined]
        REGISTERED.append(check)
        return check

    return decorate


def _crashed(error: Exception, doing: str, name: str, subject: Subject) -> CheckError:
    failure = CheckError(
        f"{type(error).__name__} while {doing}: {error}",
        fix="see the chained traceback above for the line that raised; the check's docstring "
        f"(help(charseq.testing.{name})) says what it expects.",
    )
    failure.add_context(name, subject.label)
    return failure


# -- small helpers for check bodies ---------------------------------------------------------------


def kit_settings() -> settings:
    """Hypothesis settings for a check: the active profile, without a deadline (torch's first
    calls are slow) and without the ``explain`` phase (it reruns a failing check hundreds of
    times to annotate it; shrinking already gives the smallest failing sizes)."""
    phases = tuple(phase for phase in settings.default.phases if phase is not Phase.explain)
    return settings(deadline=None, phases=phases)


def assert_close(actual: Any, expected: Any, what: str, fix: str, **tolerance: Any) -> None:
    """``torch.testing.assert_close`` whose failure is a :class:`CheckError` about ``what``."""
    try:
        torch.testing.assert_close(actual, expected, **tolerance)
    except AssertionError as error:
        raise CheckError(f"{what}:\n{textwrap.indent(str(error), '  ')}", fix) from None


def require(condition: bool, problem: str, fix: str = "") -> None:
    """Raise a :class:`CheckError` with ``problem`` and ``fix`` unless ``condition`` holds."""
    if not condition:
        raise CheckError(problem, fix)


def describe(value: Any, *, dtype: bool = False) -> str:
    """What ``value`` is, for a message: ``tuple(Tensor(2, 4), Tensor(2, 4))``, ``list``.

    With ``dtype``, tensors also give their dtype: ``Tensor(2, 6, dtype=torch.float32)``.
    """
    if isinstance(value, tuple | list):
        inner = ", ".join(describe(v, dtype=dtype) for v in value)
        return f"{type(value).__name__}({inner})"
    if isinstance(value, torch.Tensor):
        parts = [str(size) for size in value.shape]
        if dtype:
            parts.append(f"dtype={value.dtype}")
        return f"Tensor({', '.join(parts)})"
    return type(value).__name__
