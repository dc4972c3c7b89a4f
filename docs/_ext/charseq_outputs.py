"""Show what a page's code prints: run its Python blocks at build time and add their output.

A page opts in with MyST front matter::

    ---
    show-output: true
    ---

Its ``python`` code blocks then run top to bottom in one namespace, in a temporary working
directory (as the test suite runs them through Sybil), and each block that prints something is
followed by a literal block holding what it printed. Doctest blocks (``>>>``) already show
their output; they run (so later blocks see their names) but add nothing. A block that raises
is a build warning, so ``sphinx -W`` fails on it like the tests do.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import os
import tempfile
from typing import Any

import torch
from docutils import nodes
from sphinx.util import logging

logger = logging.getLogger(__name__)


def _source(block: nodes.literal_block) -> str:
    """The code of a block; for a doctest block, the code of its examples."""
    text = block.astext()
    if text.lstrip().startswith(">>>"):
        examples = doctest.DocTestParser().get_examples(text)
        return "".join(example.source for example in examples)
    return text


def _run_page(app: Any, doctree: nodes.document) -> None:
    docname = app.env.docname
    if not app.env.metadata.get(docname, {}).get("show-output"):
        return
    blocks = [
        node for node in doctree.findall(nodes.literal_block) if node.get("language") == "python"
    ]
    namespace: dict[str, Any] = {"__name__": f"docs.{docname.replace('/', '.')}"}
    before, threads = os.getcwd(), torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="charseq-docs-") as work:
        os.chdir(work)
        # One thread: the build runs every page in one process, where torch's threads spin
        # against whatever else the machine runs (a page took minutes instead of seconds).
        torch.set_num_threads(1)
        try:
            for block in blocks:
                shown = block.astext().lstrip().startswith(">>>")
                printed = io.StringIO()
                try:
                    with contextlib.redirect_stdout(printed):
                        exec(compile(_source(block), f"<{docname}>", "exec"), namespace)
                except Exception as error:  # a broken example is the page's fault
                    logger.warning(
                        "a code block raised %s: %s", type(error).__name__, error, location=block
                    )
                    return
                if printed.getvalue() and not shown:
                    output = nodes.literal_block(printed.getvalue(), printed.getvalue().rstrip())
                    output["language"] = "text"
                    output["classes"].append("charseq-output")
                    block.parent.insert(block.parent.index(block) + 1, output)
        finally:
            os.chdir(before)
            torch.set_num_threads(threads)


def setup(app: Any) -> dict[str, Any]:
    app.connect("doctree-read", _run_page)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
