"""Verse forms: a template of free and fixed characters that the generated text fills.

A template such as ``?????，?????。?????，?????。`` (a five-character quatrain, 五言絕句) holds
free places (``?``) and fixed characters (here the clause ends ``，`` and ``。``). The ``form``
constraint forces each fixed character in its place and the text ends when the template is
filled. What a free place takes (:func:`free_char`) depends on the form:

- in a named form (Chinese verse), a letter: no punctuation, symbol or space, so that a clause
  neither ends early nor holds a title's ``:``;
- in a template of one's own, any character but the template's fixed ones and a newline, so
  that lines of a fixed length in any script, spaces and commas included, come from the same
  template (``"????????????????????\\n" * 4``).

With an acrostic, a head takes the first free place of its clause (see
:class:`~charseq.constraints.builtin.Acrostic`): the form checks that every head has one.
"""

from __future__ import annotations

import unicodedata

import attrs
import torch
from torch import Tensor

from charseq.checks import describe_char
from charseq.constraints.base import (
    CompiledConstraint,
    Constraint,
    ConstraintContext,
    ConstraintTracker,
    GenerationError,
)
from charseq.constraints.builtin import Acrostic
from charseq.errors import did_you_mean
from charseq.options import option

FREE = "?"
"""A free place of a template."""

FORMS: dict[str, str] = {
    "wujue": "?????，?????。" * 2,
    "qijue": "???????，???????。" * 2,
    "wulv": "?????，?????。" * 4,
    "qilv": "???????，???????。" * 4,
}
"""The named forms: five- and seven-character quatrains (五絕, 七絕) and regulated verse of
eight lines (五律, 七律), as their clauses are punctuated in tensorflow_poems' corpora."""


def template_of(form: str) -> str:
    """The template a form names: one of :data:`FORMS`, or a template (it has a ``?``).

    Raises:
        GenerationError: an unknown form name (with the names there are), or an empty one.
    """
    if not isinstance(form, str) or not form:
        raise GenerationError(
            f"form must be a form's name ({', '.join(FORMS)}) or a template with '?' for each "
            f"free character, got {form!r}"
        )
    if form in FORMS:
        return FORMS[form]
    if FREE in form:
        return form
    raise GenerationError(
        f"unknown form {form!r}{did_you_mean(form, FORMS)}: the forms are "
        f"{', '.join(FORMS)}; or give a template with '?' for each free character, such as "
        f"{FORMS['wujue']!r}"
    )


def free_char(char: str, form: str) -> bool:
    """Whether ``char`` may fill a free place of ``form`` (a name or a template)."""
    if form in FORMS:
        return unicodedata.category(char)[0] in "LN"  # a letter or a numeral
    return char != "\n" and char not in fixed_chars(form)


def fixed_chars(template: str) -> str:
    """The template's fixed characters, each once, in order."""
    return "".join(dict.fromkeys(c for c in template if c != FREE))


def fits(text: str, form: str) -> bool:
    """Whether ``text`` fills ``form`` (a name or a template) exactly: the fixed characters in
    their places, and in each free place a character that may fill it (:func:`free_char`)."""
    template = template_of(form)
    if len(text) != len(template):
        return False
    return all(
        free_char(c, form) if t == FREE else c == t for c, t in zip(text, template, strict=True)
    )


@attrs.frozen(kw_only=True)
class FormOptions:
    """Options of ``form``."""

    template: str = option(
        "wujue", help="a form's name (wujue, qijue, wulv, qilv) or a template, '?' a free place"
    )


@attrs.frozen
class Form(Constraint):
    """Fill a template of free (``?``) and fixed characters; the text ends when it is full."""

    label = "the form"
    form: str

    @property
    def template(self) -> str:
        return template_of(self.form)

    @property
    def name(self) -> str:
        return f"the form {self.form!r}" if self.form in FORMS else "the form's template"

    @property
    def clause_ends(self) -> str:
        """The characters after which a clause begins: the template's fixed ones (an acrostic
        with no ``after`` of its own puts its heads there)."""
        return fixed_chars(self.template)

    def permits(self, char: str) -> bool:
        return char in self.template or free_char(char, self.form)

    def compile(self, context: ConstraintContext) -> CompiledForm:
        template = self.template
        fixed = fixed_chars(template)
        fixed_ids = dict(zip(fixed, context.single_ids(fixed, self.name), strict=True))
        for char in fixed:
            refusing = context.refusing(char, self)
            if refusing is not None:
                raise GenerationError(
                    f"{self.name} needs {describe_char(char)}, which {refusing.label} does not "
                    "permit: the template could never be filled"
                )
        acrostics = [c.placed(context) for c in context.constraints if isinstance(c, Acrostic)]
        for acrostic in acrostics:
            self._check_heads(acrostic, context, template)
        # a free place never takes a character after which a head is due (a ':' mid-clause)
        heads_after = "".join(a.after for a in acrostics if isinstance(a.after, str))
        free = self._free_ids(context, heads_after)
        table = torch.zeros(len(template) + 1, context.vocab_size, dtype=torch.bool)
        for place, char in enumerate(template):
            if char == FREE:
                table[place, free] = True
            else:
                table[place, fixed_ids[char]] = True
        table[-1] = True  # once filled, the text has ended: the rest is cut
        return CompiledForm(table, len(template))

    def _free_ids(self, context: ConstraintContext, banned: str) -> list[int]:
        """The ids that may fill a free place: one character each (:func:`free_char`), not in
        ``banned``, that the other constraints permit."""
        free = []
        for i in range(context.vocab_size):
            char = context.tokenizer.decode([i])
            if len(char) != 1 or char in banned or not free_char(char, self.form):
                continue
            if context.one_id(char) == i and context.refusing(char, self) is None:
                free.append(i)  # (a byte of a longer character has no character of its own)
        if not free:
            raise GenerationError(
                f"{self.name} has free places that no character of the vocabulary can fill "
                "(each is fixed in the template, a newline or punctuation, or refused by the "
                "other constraints)"
            )
        return free

    def _check_heads(self, acrostic: Acrostic, context: ConstraintContext, template: str) -> None:
        """Every head of ``acrostic`` must fall on a free place of the template."""
        heads = acrostic.heads if isinstance(acrostic.heads, str) else ""
        fixed = fixed_chars(template)
        for position, head in enumerate(heads):
            if head in fixed:
                raise GenerationError(
                    f"the acrostic's {describe_char(head)} at position {position} is fixed in "
                    f"{self.name}, so no clause can begin with it"
                )
        start, after = acrostic.at_start, acrostic.after or ""
        due = [0] if start else []
        due += [i for i in range(1, len(template)) if template[i - 1] in after]
        if len(heads) > len(due):
            where = "" if start else " (the prime does not end with one of them)"
            raise GenerationError(
                f"the acrostic has {len(heads)} heads and {self.name} has room for "
                f"{len(due)}: a head is due after each of {acrostic.after!r}{where}, and the "
                "template has that many such places; use fewer heads or a longer form"
            )
        for place in due[: len(heads)]:
            if template[place] != FREE:
                raise GenerationError(
                    f"a head of the acrostic is due at place {place} of {self.name}, which "
                    f"holds the fixed {describe_char(template[place])}: change acrostic_after"
                )


@attrs.frozen
class CompiledForm(CompiledConstraint):
    """The ids allowed at each place, ``(L + 1, V)`` bool (the last row: after the end)."""

    table: Tensor
    length: int

    def start(self, batch_size: int, device: torch.device) -> FormTracker:
        return FormTracker(self.table.to(device), self.length, batch_size)

    def end(self, text: str) -> int | None:
        return self.length if len(text) >= self.length else None

    @property
    def longest(self) -> int:
        return self.length


class FormTracker(ConstraintTracker):
    """``place`` is each row's next place in the template ``(B,)``."""

    def __init__(self, table: Tensor, length: int, batch: int) -> None:
        self.table = table
        self.length = length
        self.place = torch.zeros(batch, dtype=torch.long, device=table.device)

    @property
    def finished(self) -> Tensor:  # type: ignore[override]
        return self.place >= self.length

    def mask(self, logits: Tensor) -> Tensor:
        allowed = self.table[self.place]  # (B, V)
        return logits.masked_fill(~allowed, float("-inf"))

    def allows(self, ids: Tensor, vocab_size: int) -> Tensor:
        inside = (ids >= 0) & (ids < vocab_size)
        rows = self.table[self.place]  # (B, V)
        return rows.gather(1, ids.clamp(0, vocab_size - 1).unsqueeze(1)).squeeze(1) & inside

    def advance(self, ids: Tensor) -> None:
        self.place = (self.place + 1).clamp(max=self.length)

    def reorder(self, index: Tensor) -> None:
        self.place = self.place.index_select(0, index)


def form(template: str = "wujue") -> Form:
    """Fill a verse form (wujue, qijue, wulv, qilv) or a template ('?': a free place)."""
    built = Form(template)
    template_of(template)  # an unknown name is refused when the constraint is made
    return built
