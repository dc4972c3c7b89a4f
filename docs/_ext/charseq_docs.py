"""Sphinx directives that write charseq's reference pages from the code, at build time.

- ``charseq-cli``: every command of the ``charseq`` click group (``charseq.cli.cli``), with its
  help, usage line, arguments, options (as ``--help`` prints them) and epilog.
- ``charseq-options``: every option of the spec's fixed sections and of every registered
  component, from their attrs options classes (:func:`charseq.options.describe_options`).
- ``charseq-checks``: every check of the conformance kit (:func:`charseq.testing.all_checks`),
  with when it applies and the first paragraph of its docstring.

Nothing here is copied from the code, so the pages cannot go stale. The directives build
docutils nodes themselves, so they work the same in MyST Markdown and in reStructuredText.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Sequence
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx import addnodes
from sphinx.util.docutils import SphinxDirective

# -- small node builders --------------------------------------------------------------------------

_INLINE = re.compile(
    r"``(?P<literal>.+?)``"  # ``code``
    r"|:(?P<role>[a-z]+):`(?P<target>[^`]+)`"  # :class:`~charseq.Cell`
    r"|`(?P<plain>[^`]+)`"  # `name` (Markdown-style code in help texts)
)
_PY_ROLES = {"class", "func", "meth", "attr", "data", "mod", "exc", "obj"}


def inline(text: str) -> list[nodes.Node]:
    """``text`` as inline nodes: ``literal``, :role:`target` (a cross-reference) and `code`."""
    out: list[nodes.Node] = []
    position = 0
    for match in _INLINE.finditer(text):
        if match.start() > position:
            out.append(nodes.Text(text[position : match.start()]))
        position = match.end()
        if match["literal"] is not None:
            out.append(nodes.literal(text=match["literal"]))
        elif match["plain"] is not None:
            out.append(nodes.literal(text=match["plain"]))
        else:
            out.append(_reference(match["role"], match["target"]))
    if position < len(text):
        out.append(nodes.Text(text[position:]))
    return out


def _reference(role: str, target: str) -> nodes.Node:
    """A Python cross-reference as ``:role:`target``` would make (unresolved ones stay text)."""
    explicit = re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^>]+)>", target)
    if explicit:
        title, target = explicit["title"], explicit["target"]
    else:
        title = target.lstrip("~")
        if target.startswith("~"):
            title = title.rsplit(".", 1)[-1]
        target = target.lstrip("~")
        if role in {"func", "meth"}:
            title += "()"
    text = nodes.literal(text=title, classes=["xref", "py", f"py-{role}"])
    if role not in _PY_ROLES:
        return text
    xref = addnodes.pending_xref(
        "",
        text,
        refdomain="py",
        reftype=role,
        reftarget=target,
        refexplicit=bool(explicit),
        refwarn=False,
    )
    xref["py:module"] = None
    xref["py:class"] = None
    return xref


def paragraph(text: str) -> nodes.paragraph:
    return nodes.paragraph("", "", *inline(" ".join(text.split())))


def literal_block(text: str, language: str = "text") -> nodes.literal_block:
    block = nodes.literal_block(text, text)
    block["language"] = language
    return block


def table(
    headers: Sequence[str], rows: Iterable[Sequence[nodes.Node | str]], widths: Sequence[int]
) -> nodes.table:
    """A table; a cell given as a string is rendered with :func:`inline`."""
    group = nodes.tgroup(cols=len(headers))
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    head += _row(headers)
    group += head
    body = nodes.tbody()
    for row in rows:
        body += _row(row)
    group += body
    out = nodes.table(classes=["charseq-table"])
    out += group
    return out


def _row(cells: Sequence[nodes.Node | str]) -> nodes.row:
    row = nodes.row()
    for cell in cells:
        entry = nodes.entry()
        entry += paragraph(cell) if isinstance(cell, str) else cell
        row += entry
    return row


def code(text: str) -> nodes.paragraph:
    """A table cell holding one piece of code."""
    return nodes.paragraph("", "", nodes.literal(text=text))


def first_paragraph(doc: str | None) -> str:
    """The first paragraph of a docstring, on one line."""
    text = inspect.cleandoc(doc or "")
    return " ".join(text.split("\n\n", 1)[0].split())


class _Sections:
    """Makes sections with ids that are unique in the document."""

    def __init__(self, directive: SphinxDirective) -> None:
        self.document = directive.state.document

    def __call__(self, title: str | list[nodes.Node], key: str) -> nodes.section:
        base = nodes.make_id(key)
        ident, n = base, 1
        while ident in self.document.ids:
            n += 1
            ident = f"{base}-{n}"
        title_node = (
            nodes.title("", title) if isinstance(title, str) else nodes.title("", "", *title)
        )
        section = nodes.section(
            "", title_node, ids=[ident], names=[nodes.fully_normalize_name(key)]
        )
        self.document.note_implicit_target(section, section)
        return section


# -- charseq-cli -----------------------------------------------------------------------------------


def _help_blocks(text: str | None) -> list[nodes.Node]:
    """Click help text as nodes: a paragraph after a ``\\b`` line keeps its line breaks."""
    out: list[nodes.Node] = []
    for block in inspect.cleandoc(text or "").split("\n\n"):
        lines = block.splitlines()
        if not lines:
            continue
        if lines[0].strip() == "\b":
            out.append(literal_block("\n".join(lines[1:])))
        else:
            out.append(paragraph(block))
    return out


class CliDirective(SphinxDirective):
    """Document a click group and each of its commands: ``.. charseq-cli:: module:object``.

    The argument defaults to ``charseq.cli:cli``; ``:prog:`` names the program (``charseq``).
    """

    optional_arguments = 1
    option_spec = {"prog": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        module, _, name = (self.arguments[0] if self.arguments else "charseq.cli:cli").partition(
            ":"
        )
        group = getattr(__import__(module, fromlist=[name]), name)
        prog = self.options.get("prog", "charseq")
        source = inspect.getsourcefile(group.callback)
        if source:
            self.env.note_dependency(source)
        ctx = group.make_context(prog, [], resilient_parsing=True)
        section = _Sections(self)
        out: list[nodes.Node] = [*_help_blocks(group.help), *self._usage_and_params(group, ctx)]
        for command_name in group.list_commands(ctx):
            command = group.get_command(ctx, command_name)
            if command is None or command.hidden:
                continue
            command_source = inspect.getsourcefile(inspect.unwrap(command.callback))
            if command_source:  # each command has its own module (charseq/cli/train.py, ...)
                self.env.note_dependency(command_source)
            sub = command.make_context(command_name, [], parent=ctx, resilient_parsing=True)
            path = f"{prog} {command_name}"
            box = section([nodes.literal(text=path)], path)
            box += _help_blocks(command.help)
            box += self._usage_and_params(command, sub)
            if command.epilog:
                box += _help_blocks(command.epilog)
            out.append(box)
        return out

    def _usage_and_params(self, command: Any, ctx: Any) -> list[nodes.Node]:
        import click

        out: list[nodes.Node] = [literal_block(command.get_usage(ctx), "text")]
        arguments, options = [], []
        for param in command.get_params(ctx):
            if isinstance(param, click.Argument):
                required = "required" if param.required else "optional"
                kind = param.type.name
                arguments.append([code(param.make_metavar(ctx)), f"{kind}, {required}"])
            elif isinstance(param, click.Option) and not param.hidden:
                record = param.get_help_record(ctx)
                if record is not None:
                    options.append([code(record[0]), record[1]])
        if arguments:
            out.append(table(["Argument", "Type"], arguments, [30, 70]))
        if options:
            out.append(table(["Option", "Description"], options, [35, 65]))
        return out


# -- charseq-options -------------------------------------------------------------------------------


def options_table(options: list[dict[str, Any]]) -> nodes.Node:
    from charseq.options import format_default  # as `charseq plugins` shows a default

    if not options:
        return nodes.paragraph(text="No options.")
    rows = [
        [code(o["name"]), code(o["type"]), code(format_default(o["default"])), o["help"]]
        for o in options
    ]
    return table(["Option", "Type", "Default", "Description"], rows, [18, 17, 15, 50])


class OptionsDirective(SphinxDirective):
    """Every option of the spec: the fixed sections and each component's options class.

    Renders sections for ``[cell]`` (the layout every cell gets), ``[model]`` and ``[train]``,
    then one section per kind with one subsection per component. ``:builtins-only:`` leaves out
    components of installed third-party plugins.
    """

    option_spec = {"builtins-only": directives.flag}

    def run(self) -> list[nodes.Node]:
        import charseq.spec
        from charseq.interfaces import KINDS
        from charseq.options import describe_options
        from charseq.registry import BUILTIN_DISTRIBUTION, get_registry
        from charseq.spec import CellLayout, ModelSpec, TaskSpec, TrainSpec

        self.env.note_dependency(charseq.spec.__file__)
        section = _Sections(self)
        out: list[nodes.Node] = []
        fixed = [
            ("task", TaskSpec, "what the model is trained to do"),
            ("cell", CellLayout, "every cell, whatever its name"),
            ("model", ModelSpec, "the embedding and dropout around the cells"),
            ("train", TrainSpec, "the training loop"),
        ]
        for name, cls, about in fixed:
            box = section(
                [nodes.literal(text=f"[{name}]"), nodes.Text(f": {about}")], f"spec-{name}"
            )
            box += paragraph(first_paragraph(cls.__doc__))
            box += options_table(describe_options(cls))
            out.append(box)
        registry = get_registry()
        builtins_only = "builtins-only" in self.options
        for kind in KINDS:
            components = [
                c
                for c in registry.components(kind)
                if not builtins_only or c.owner.distribution == BUILTIN_DISTRIBUTION
            ]
            box = section(
                [nodes.literal(text=f"[{kind}]"), nodes.Text(f": the {kind}s")], f"spec-{kind}s"
            )
            box += paragraph(
                f'Give a {kind} as ``{kind} = "name"`` or as a table with ``name`` and the '
                "options below."
            )
            for component in components:
                sub = section([nodes.literal(text=component.name)], f"spec-{kind}-{component.name}")
                owner = component.owner
                sub += paragraph(
                    f"{component.help.rstrip('.')}. From {owner.distribution} {owner.version}."
                )
                sub += options_table(describe_options(component.options))
                box += sub
            out.append(box)
        return out


# -- charseq-checks --------------------------------------------------------------------------------


_PARENTHESIS = re.compile(r"\s*\([^)]*\)$")


class ChecksDirective(SphinxDirective):
    """A table of the conformance kit's checks for one kind (``.. charseq-checks:: cell``)."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        from charseq.testing import all_checks, checklist, tags

        self.env.note_dependency(tags.__file__)
        self.env.note_dependency(checklist.__file__)
        rows = []
        for check in all_checks(self.arguments[0]):
            requires = getattr(check, "requires", ())
            needs = [_PARENTHESIS.sub("", tags.TAGS[tag].meaning) for tag in requires]
            applies = "needs " + " and ".join(needs) if needs else "always"
            rows.append([code(check.__name__), applies, first_paragraph(check.__doc__)])
        return [table(["Check", "Applies", "What it checks"], rows, [28, 22, 50])]


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("charseq-cli", CliDirective)
    app.add_directive("charseq-options", OptionsDirective)
    app.add_directive("charseq-checks", ChecksDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
