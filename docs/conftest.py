"""Run every Python code block of the documentation as a test (Sybil).

Blocks on a page share one namespace and run top to bottom, as a reader would run them. Each page
runs in its own temporary directory.
"""

import os

import pytest
from sybil import Sybil
from sybil.parsers.myst import PythonCodeBlockParser, SkipParser


@pytest.fixture(scope="module")
def _in_tmp(tmp_path_factory):
    """One temporary working directory per page, shared by the page's blocks."""
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("page"))
    yield
    os.chdir(before)


pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["*.md"],
    excludes=["_build/*"],
    fixtures=["_in_tmp"],
).pytest()
