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

Figures: a block that saves a PNG file into the working directory, e.g. with matplotlib's
object-oriented API (which needs no display and no backend choice)::

    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot(steps, losses)
    fig.savefig("loss-curves.png", dpi=100)

is followed, in the built page, by that image (after what it printed), one per PNG the block
wrote or rewrote, in name order; the file's name, dashes and underscores read as spaces, is its
alt text. The image is embedded in the HTML as a ``data:`` URI, so the figure is made by the
build from the page's own numbers, nothing is written into the source tree and no PNG is
committed. Under pytest the same block saves into the page's temporary directory (see
docs/conftest.py), where the file is simply left behind.

HTML fragments: a block that writes an ``.html`` file into the working directory, e.g.::

    Path("surprise.html").write_text(f"<pre>{html.escape(text)}</pre>")

is followed, in the built page, by that fragment as raw HTML (real text: selectable, searchable
with the browser's find), inside a ``<div class="charseq-html-output">``. Figures and fragments
come together, one per file the block wrote or rewrote, in name order. The fragment is inserted
as it is: the page's code escapes what it shows (``html.escape``), so that a ``<`` or ``&`` in
the text reads as itself. Builders other than HTML leave fragments out.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from charseq_images import data_image
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


SHOWN = (".png", ".html")
"""The kinds of file a block may write to have them shown after it: figures and HTML fragments."""


def _outputs(directory: str) -> dict[str, tuple[int, int]]:
    """The PNG and HTML files in a directory, by name: their modification time and size."""
    return {
        path.name: (path.stat().st_mtime_ns, path.stat().st_size)
        for path in Path(directory).iterdir()
        if path.suffix in SHOWN and path.is_file()
    }


def _image(path: Path) -> nodes.image:
    """An image node showing a PNG file, its bytes embedded as a data: URI."""
    alt = path.stem.replace("-", " ").replace("_", " ")
    return data_image(path.read_bytes(), "image/png", alt, classes=["charseq-figure"])


def _fragment(path: Path) -> nodes.raw:
    """A raw HTML node holding an HTML fragment file, as it is (its author escaped its text)."""
    text = path.read_text("utf-8")
    wrapped = f'<div class="charseq-html-output">\n{text}\n</div>'
    return nodes.raw("", wrapped, format="html")


def _shown(path: Path) -> nodes.Element:
    """What a file a block wrote looks like in the page: an image or an HTML fragment."""
    return _image(path) if path.suffix == ".png" else _fragment(path)


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
        data = Path(app.srcdir, "data")
        if data.is_dir():  # docs/data/..., as a reader reads it from the root of a clone
            Path(work, "docs").mkdir()
            Path(work, "docs", "data").symlink_to(data, target_is_directory=True)
        os.chdir(work)
        # One thread: the build runs every page in one process, where torch's threads spin
        # against whatever else the machine runs (a page took minutes instead of seconds).
        torch.set_num_threads(1)
        try:
            for block in blocks:
                shown = block.astext().lstrip().startswith(">>>")
                printed = io.StringIO()
                files = _outputs(work)
                try:
                    with contextlib.redirect_stdout(printed):
                        exec(compile(_source(block), f"<{docname}>", "exec"), namespace)
                except Exception as error:  # a broken example is the page's fault
                    logger.warning(
                        "a code block raised %s: %s", type(error).__name__, error, location=block
                    )
                    return
                shown_after: list[nodes.Element] = []
                if printed.getvalue() and not shown:
                    output = nodes.literal_block(printed.getvalue(), printed.getvalue().rstrip())
                    output["language"] = "text"
                    output["classes"].append("charseq-output")
                    shown_after.append(output)
                written = _outputs(work).items()
                drawn = sorted(name for name, stat in written if files.get(name) != stat)
                shown_after += [_shown(Path(work, name)) for name in drawn]
                at = block.parent.index(block) + 1
                block.parent[at:at] = shown_after
        finally:
            os.chdir(before)
            torch.set_num_threads(threads)


def setup(app: Any) -> dict[str, Any]:
    app.connect("doctree-read", _run_page)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
