"""Run every Python code block of the documentation as a test (Sybil).

Blocks on a page share one namespace and run top to bottom, as a reader would run them. Each page
runs in its own temporary directory, where ``docs/data`` is readable as from a clone's root.

A page with ``show-output: true`` also runs in the documentation build, which fails on a block
that raises (``tests/test_docs_build.py``, warnings as errors). When that build test is in the
session too (the whole suite), such a page's blocks are deselected here, so that its code runs
once, not twice: in the build. Pages with doctest examples (``>>>``, whose printed output is
compared only here) and pages the build excludes still run here; so does every page when it is
tested alone (``pytest docs/tutorial/first-model.md``).
"""

import os
import re
from pathlib import Path

import pytest
from sybil import Sybil
from sybil.parsers.myst import PythonCodeBlockParser, SkipParser

DATA = Path(__file__).parent / "data"
"""Texts the pages read (a sample of poems), as ``docs/data/...`` from the repository root."""


def link_data(work: Path) -> None:
    """Make ``docs/data`` readable from ``work``, as from the root of a clone."""
    if DATA.is_dir():
        (work / "docs").mkdir()
        (work / "docs" / "data").symlink_to(DATA, target_is_directory=True)


@pytest.fixture(scope="module")
def _in_tmp(tmp_path_factory):
    """One temporary working directory per page, shared by the page's blocks; a page reads
    ``docs/data/...`` there as a reader does from the root of a clone."""
    before = os.getcwd()
    work = tmp_path_factory.mktemp("page")
    link_data(work)
    os.chdir(work)
    yield
    os.chdir(before)


pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["*.md"],
    excludes=["_build/*"],
    fixtures=["_in_tmp"],
).pytest()


SHOWN = re.compile(r"\A---\n(?:.*\n)*?show-output: true\n(?:.*\n)*?---\n")
"""MyST front matter that asks the build to run the page and show what it prints."""


def run_by_the_build(path: Path) -> bool:
    """Whether the documentation build runs all of this page's code (and fails on it)."""
    if path.name == "README.md" or path.parent.name in ("_build", "_ext", "data"):
        return False  # excluded from the build (docs/conf.py)
    text = path.read_text("utf-8")
    return bool(SHOWN.match(text)) and not re.search(r"^>>> ", text, re.MULTILINE)


def pytest_collection_modifyitems(config, items):
    """With the build test in the session, leave to it the pages it runs (see above)."""
    if not any(item.name == "test_docs_build_without_warnings" for item in items):
        return
    pages = Path(__file__).parent
    built = {}
    keep, leave = [], []
    for item in items:
        path = Path(item.path)
        if path.suffix == ".md" and path.is_relative_to(pages):
            if path not in built:
                built[path] = run_by_the_build(path)
            (leave if built[path] else keep).append(item)
        else:
            keep.append(item)
    if leave:
        config.hook.pytest_deselected(items=leave)
        items[:] = keep
