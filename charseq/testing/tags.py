"""Tags: what a component supports, which decides the checks that apply to it.

:data:`TAGS` is the one table of tags. Each row says what the tag means (the words a skip reason
and the docs' checks table use), how the kit works it out from a built component, and how
:func:`charseq.testing.get_tags` documents it; the three are generated from here.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from charseq.interfaces import Cell, TokenSampler
from charseq.testing.fixtures import CONSTRAINT_ALPHABET, CONSTRAINT_PRIMES

if TYPE_CHECKING:
    from charseq.testing._base import Subject

__all__ = ["TAGS", "TAGS_METHOD", "Tag", "compute_tags", "document_tags", "not_applicable"]

TAGS_METHOD = "__charseq_tags__"
"""Name of the optional method a built component defines to refine its tags."""


@attrs.frozen
class Tag:
    """One tag of one kind.

    Attributes:
        kind: ``"cell"``, ``"tokenizer"``, ``"sampler"`` or ``"constraint"``.
        meaning: what a check that requires the tag needs, completing "it needs ...".
        doc: how the kit works the tag out, for the docs of :func:`charseq.testing.get_tags`.
        detect: ``detect(subject, built)``, the tag's value for a component ``built`` by the
            subject's factory.
    """

    kind: str
    meaning: str
    doc: str
    detect: Callable[[Subject, Any], Any]


def _overrides(method: str) -> Callable[[Subject, Any], bool]:
    """Whether the built cell's class has a ``method`` of its own (not charseq.Cell's)."""
    return lambda subject, built: getattr(type(built), method, None) is not getattr(Cell, method)


def _option(kind: str, name: str) -> Tag:
    """A tag saying that the component has the option ``name``."""
    return Tag(
        kind,
        f"a `{name}` option",
        f"it has a ``{name}`` option",
        lambda subject, built: name in subject.option_names,
    )


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

TAGS: dict[str, Tag] = {
    "fused_forward": Tag(
        "cell",
        "a fused `forward` of its own (it runs the core's step loop)",
        "the class overrides :meth:`charseq.Cell.forward`",
        _overrides("forward"),
    ),
    "fused_stack": Tag(
        "cell",
        "a `forward_stack` classmethod (a fused multi-layer kernel)",
        "the class offers ``forward_stack`` (a fused multi-layer kernel)",
        lambda subject, built: callable(getattr(type(built), "forward_stack", None)),
    ),
    "inference_step": Tag(
        "cell",
        "an `inference_step` method of its own (generation runs its `step`)",
        "the class overrides :meth:`charseq.Cell.inference_step`",
        _overrides("inference_step"),
    ),
    "unknown_policy": Tag(
        "tokenizer",
        "an `unknown` option (the unknown-character policy)",
        'it has an ``unknown`` option ("error" / "skip" / "replace")',
        lambda subject, built: "unknown" in subject.option_names,
    ),
    "texts": Tag(
        "tokenizer",
        "texts it round-trips",
        "the texts it round-trips: the name of a family in "
        ':data:`charseq.testing.strategies.TEXTS` (default ``"unicode"``), an alphabet '
        '``{"alphabet": "abc ."}`` (neither needs Hypothesis where the plugin runs), or a '
        "Hypothesis strategy",
        lambda subject, built: "unicode",
    ),
    "stream_decoder": Tag(
        "tokenizer",
        "a `stream_decoder` (it decodes ids fed in pieces)",
        "it has one (:meth:`charseq.Tokenizer.stream_decoder`)",
        lambda subject, built: built.stream_decoder() is not None,
    ),
    "greedy": Tag(
        "sampler",
        "to be a greedy sampler",
        "it always takes the arg-max (its name is ``greedy``)",
        lambda subject, built: subject.name == "greedy",
    ),
    "token_sampler": Tag(
        "sampler",
        "to be a charseq.TokenSampler",
        "it is a :class:`charseq.TokenSampler`",
        lambda subject, built: isinstance(built, TokenSampler),
    ),
    "deterministic": Tag(
        "sampler",
        "to say it is deterministic (`Sampler.deterministic`)",
        "it says so (:attr:`charseq.Sampler.deterministic`)",
        lambda subject, built: bool(getattr(built, "deterministic", False)),
    ),
    **{option: _option("sampler", option) for option in _SAMPLER_OPTIONS},
    "alphabet": Tag(
        "constraint",
        "a vocabulary of these characters",
        "the characters of the ``char`` vocabulary the checks compile it for (default "
        ":data:`charseq.testing.fixtures.CONSTRAINT_ALPHABET`: lower-case letters, a space, "
        "``.,:``, a newline, ``春夏秋冬`` and ``，。``); a constraint that needs others says so",
        lambda subject, built: CONSTRAINT_ALPHABET,
    ),
    "primes": Tag(
        "constraint",
        "these primes",
        "the primes the checks compile it after, a tuple of strings (default "
        ':data:`charseq.testing.fixtures.CONSTRAINT_PRIMES`: ``""`` and ``"the sea"``)',
        lambda subject, built: CONSTRAINT_PRIMES,
    ),
}
"""Every tag, by name, in the order :func:`~charseq.testing.get_tags` lists them."""


def compute_tags(subject: Subject) -> dict[str, Any]:
    """The tags of ``subject``: each of its kind's :data:`TAGS` detected on one built component,
    then updated by the component's own ``__charseq_tags__()``, if it has one."""
    built = subject.build(2, 3) if subject.kind == "cell" else subject.build()
    tags = {
        name: tag.detect(subject, built) for name, tag in TAGS.items() if tag.kind == subject.kind
    }
    refine = getattr(built, TAGS_METHOD, None)
    if callable(refine):
        tags.update(refine())
    return tags


def not_applicable(check: Callable[..., None], subject: Subject) -> str | None:
    """Why ``check`` does not apply to ``subject``, or ``None`` when it does."""
    missing = [tag for tag in getattr(check, "requires", ()) if not subject.tags.get(tag)]
    if not missing:
        return None
    needs = " and ".join(TAGS[tag].meaning for tag in missing)
    return f"{check.__name__} does not apply to {subject.label}: it needs {needs}"


_KIND_HEADINGS = {
    "cell": "Cells",
    "tokenizer": "Tokenizers",
    "sampler": "Samplers",
    "constraint": "Constraints",
}


def document_tags() -> str:
    """The tags of every kind as the reST the docstring of ``get_tags`` ends with."""
    blocks = []
    for kind, heading in _KIND_HEADINGS.items():
        lines = [f"``{name}``: {tag.doc}" for name, tag in TAGS.items() if tag.kind == kind]
        body = ";\n".join(
            textwrap.fill(line, 92, initial_indent="    ", subsequent_indent="    ")
            for line in lines
        )
        blocks.append(f"{heading}:\n{body}.")
    return "\n".join(blocks)
