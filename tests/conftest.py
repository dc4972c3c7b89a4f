"""Test settings: a small Hypothesis profile for CI (2 cores, no GPU), a larger one on request;
the ``corpus`` fixture the command-line tests (tests/test_cli*.py) train on; the ``browser``
fixture (a headless Chromium, tests/browser.py) for the tests that open a page."""

import os

import pytest
from hypothesis import HealthCheck, settings

from tests.browser import browser  # noqa: F401  (a fixture: pytest finds it here)

settings.register_profile(
    "ci", max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=40, deadline=None)
settings.register_profile("nightly", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("CHARSEQ_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    """A small text file, with ``tmp_path`` as the working directory (where runs/latest goes)."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "corpus.txt"
    path.write_text("to be or not to be, that is the question. " * 40, "utf-8")
    return path
