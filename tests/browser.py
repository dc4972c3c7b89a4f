"""A headless Chromium for the tests that open a page: the report (``charseq inspect --html``)
and the server's page.

The ``browser`` fixture (registered in ``tests/conftest.py``) is a Selenium WebDriver of Debian's
``chromium`` and ``chromium-driver``, started by :func:`charseq.testing.browser.headless_chromium`
(which the tutorial's screenshot uses too). ``scripts/test`` installs them with apt-get when it
runs as root; elsewhere a machine without them skips these tests, with the reason, and never
fails for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from charseq.testing.browser import NoBrowser, headless_chromium

__all__ = ["browser", "console_errors", "open_page"]


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A headless Chromium driven by Selenium, one for the session (a fresh profile); skips
    when Selenium, Chromium or its driver is missing or the browser will not start."""
    try:
        driver = headless_chromium(tmp_path_factory.mktemp("chromium-profile"))
    except NoBrowser as missing:
        pytest.skip(f"browser tests: {missing}")
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver: Any, path: str | Path) -> None:
    """Load a local file in ``driver`` (``get`` returns after the load event, its scripts run).
    The console's earlier messages are dropped first: :func:`console_errors` sees this page's."""
    driver.get_log("browser")
    driver.get(Path(path).resolve().as_uri())


def console_errors(driver: Any) -> list[str]:
    """The errors the browser's console got since the last call (a script's exception, a
    request the page's Content-Security-Policy refused)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
