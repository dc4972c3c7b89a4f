"""What every check shares: the error it raises, the subject it checks, tags, the check registry.

A *subject* is what a check runs on. Checks accept any of:

- a registry :class:`~charseq.registry.Component` (built with its default options);
- a string ``"kind:name"`` (or a bare ``"name"`` of the check's own kind), looked up in
  :func:`charseq.get_registry`;
- a plain factory: ``make_cell(input_size, hidden_size, **options)``,
  ``make_tokenizer(**options)`` or ``make_sampler(**options)``.
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

from charseq.interfaces import KINDS
from charseq.registry import Component, get_registry

CHECKED_KINDS = ("cell", "tokenizer", "sampler")
"""The kinds the kit has checks for."""

TAGS_METHOD = "__charseq_tags__"
"""Name of the optional method a built component defines to refine its tags."""


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

    @functools.cached_property
    def tags(self) -> dict[str, Any]:
        """What the kit knows about the component (see :func:`get_tags`)."""
        return _compute_tags(self)


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
                "'tokenizer', 'sampler'), a registry Component or a 'kind:name' string, or call "
                "the kind's checks directly"
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
    if ":" in spec and spec.split(":", 1)[0] in KINDS:
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

    Cells:
        ``fused_forward``: the class overrides :meth:`charseq.Cell.forward`;
        ``fused_stack``: the class offers ``forward_stack`` (a fused multi-layer kernel);
        ``inference_step``: the class overrides :meth:`charseq.Cell.inference_step`.
    Tokenizers:
        ``unknown_policy``: it has an ``unknown`` option ("error" / "skip" / "replace");
        ``texts``: the texts it round-trips: the name of a family in
        :data:`charseq.testing.strategies.TEXTS` (default ``"unicode"``), an alphabet
        ``{"alphabet": "abc ."}`` (neither needs Hypothesis where the plugin runs), or a
        Hypothesis strategy;
        ``stream_decoder``: it has one (:meth:`charseq.Tokenizer.stream_decoder`).
    Samplers:
        ``greedy``: it always takes the arg-max (its name is ``greedy``);
        ``temperature``, ``top_k``, ``top_p``, ``min_p``, ``repetition_penalty``,
        ``num_beams``, ``length_penalty``, ``num_return_sequences``: it has that option;
        ``token_sampler``: it is a :class:`charseq.TokenSampler`;
        ``deterministic``: it says so (:attr:`charseq.Sampler.deterministic`).
    """
    return dict(as_subject(component, kind).tags)


def _compute_tags(subject: Subject) -> dict[str, Any]:
    names = subject.option_names
    if subject.kind == "cell":
        from charseq.interfaces import Cell

        built = subject.build(2, 3)
        cls = type(built)
        tags: dict[str, Any] = {
            "fused_forward": getattr(cls, "forward", None) is not Cell.forward,
            "fused_stack": callable(getattr(cls, "forward_stack", None)),
            "inference_step": getattr(cls, "inference_step", None) is not Cell.inference_step,
        }
    elif subject.kind == "tokenizer":
        built = subject.build()
        tags = {
            "unknown_policy": "unknown" in names,
            "texts": "unicode",
            "stream_decoder": built.stream_decoder() is not None,
        }
    else:
        from charseq.interfaces import TokenSampler

        built = subject.build()
        tags = {
            "greedy": subject.name == "greedy",
            "token_sampler": isinstance(built, TokenSampler),
            "deterministic": bool(getattr(built, "deterministic", False)),
            **{option: option in names for option in _SAMPLER_OPTIONS},
        }
    refine = getattr(built, TAGS_METHOD, None)
    if callable(refine):
        tags.update(refine())
    return tags


_SAMPLER_OPTIONS = (
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repetition_penalty",
    "num_beams",
    "length_penalty",
    "num_return_sequences",
)

_TAG_MEANING = {
    "fused_forward": "a fused `forward` of its own (it runs the core's step loop)",
    "fused_stack": "a `forward_stack` classmethod (a fused multi-layer kernel)",
    "inference_step": "an `inference_step` method of its own (generation runs its `step`)",
    "unknown_policy": "an `unknown` option (the unknown-character policy)",
    "greedy": "to be a greedy sampler",
    "token_sampler": "to be a charseq.TokenSampler",
    "temperature": "a `temperature` option",
    "top_k": "a `top_k` option",
    "top_p": "a `top_p` option",
    "min_p": "a `min_p` option",
    "repetition_penalty": "a `repetition_penalty` option",
    "num_beams": "a `num_beams` option",
    "length_penalty": "a `length_penalty` option",
    "num_return_sequences": "a `num_return_sequences` option",
}


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


# -- the check registry ---------------------------------------------------------------------------

CHECKS: dict[str, list[Callable[..., None]]] = {kind: [] for kind in CHECKED_KINDS}
"""Every check, by kind, in the order they run."""


def not_applicable(check: Callable[..., None], subject: Subject) -> str | None:
    """Why ``check`` does not apply to ``subject``, or ``None`` when it does."""
    missing = [tag for tag in getattr(check, "requires", ()) if not subject.tags.get(tag)]
    if not missing:
        return None
    needs = " and ".join(_TAG_MEANING.get(tag, f"tag {tag!r}") for tag in missing)
    return f"{check.__name__} does not apply to {subject.label}: it needs {needs}"


def register_check(kind: str, *, requires: tuple[str, ...] = ()) -> Callable[..., Any]:
    """Decorate a check body ``body(subject, **kwargs)`` into a public check.

    The public check accepts any subject (:func:`as_subject`), skips when a required tag is
    missing, runs with the global torch RNG forked (it leaves the caller's seed alone) and turns
    any exception into a :class:`CheckError` naming the check and the component.
    """

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
        CHECKS[kind].append(check)
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
