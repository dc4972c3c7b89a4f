"""Run every Python code block of the documentation as a test (Sybil).

Blocks on a page share one namespace and run top to bottom, as a reader would run them. Each page
runs in its own temporary directory, where ``docs/data`` is readable as from a clone's root.
"""

import os
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
