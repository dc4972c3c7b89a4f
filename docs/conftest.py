"""Run every Python code block of the documentation as a test (Sybil).

Blocks on a page share one namespace and run top to bottom, as a reader would run them. Each page
runs in its own temporary directory.
"""

import pytest
from sybil import Sybil
from sybil.parsers.myst import PythonCodeBlockParser, SkipParser


@pytest.fixture
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["*.md"],
    excludes=["_build/*"],
    fixtures=["_in_tmp"],
).pytest()
