"""Sphinx configuration: MyST Markdown pages; every code block also runs under pytest (Sybil)."""

import sys
from pathlib import Path

import sphinx.builders

sys.path.insert(0, str(Path(__file__).parent / "_ext"))  # charseq_docs: reference from the code

project = "charseq"
copyright = "2026, the charseq authors"
author = "the charseq developers"
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    # MathJax 3 from the package itself, copied into _static/mathjax: maths render offline, from
    # the built site alone (no CDN). It sets mathjax_path to mathjax/tex-chtml.js.
    "sphinx-mathjax-offline",
    "sphinx_copybutton",
    "charseq_docs",
    "charseq_outputs",  # pages with `show-output: true` show what their code prints
    "charseq_drawings",  # ```{drawing} NAME```: the tutorial's diagrams, drawn at build time
]
source_suffix = {".md": "markdown"}
exclude_patterns = [
    "_build",
    "_ext",
    "conftest.py",
    "README.md",  # how to build
    "data",  # texts the pages read (a sample of poems) and their SOURCES.md
]
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3
# Furo: self-contained (no web fonts, no CDN), and its content column fits a 100-character
# code line at 1280 px.
html_theme = "furo"
html_title = "charseq"
html_static_path = ["_static"]
html_css_files = ["charseq.css"]  # a column wide enough for 100-character code lines
# The copy button copies the code only, not a ">>> " or "$ " prompt.
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
nitpicky = False


def _dealt_out(arguments, nproc, maxbatch=10):
    """Sphinx's parallel build hands each process chunks of about 15 pages in name order, so
    the tutorials, whose code takes most of the build, mostly land in one chunk. Dealt out like
    cards into four chunks a process instead, tutorials first, every chunk gets its share."""
    pages = sorted(arguments, key=lambda name: not name.startswith("tutorial/"))
    chunks = min(len(pages), 4 * nproc)
    return [pages[i::chunks] for i in range(chunks)]


def setup(app):
    """Read pages in parallel (``sphinx -j``, as the test suite builds): pages dealt out, and
    sphinx-mathjax-offline said to be safe for it (it only copies MathJax when the build has
    finished, but does not declare it)."""
    sphinx.builders.make_chunks = _dealt_out
    extension = app.extensions.get("sphinx-mathjax-offline")
    if extension is not None:
        extension.parallel_read_safe = extension.parallel_write_safe = True
