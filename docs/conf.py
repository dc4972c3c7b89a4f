"""Sphinx configuration: MyST Markdown pages; every code block also runs under pytest (Sybil)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))  # charseq_docs: reference from the code

project = "charseq"
author = "the charseq developers"
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "charseq_docs",
    "charseq_outputs",  # pages with `show-output: true` show what their code prints
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_ext", "conftest.py"]
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3
html_theme = "alabaster"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
nitpicky = False
