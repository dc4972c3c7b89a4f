"""A headless Chromium for the tests that open a page: the report (``charseq inspect --html``)
and, later, the server's pages.

The ``browser`` fixture (registered in ``tests/conftest.py``) is a Selenium WebDriver of Debian's
``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``, ``/usr/bin/chromedriver``; found on
the ``PATH`` too). ``scripts/test`` installs them with apt-get when it runs as root; elsewhere a
machine without them skips these tests, with the reason, and never fails for it. Selenium is
given both paths, so it never looks for (or downloads) a browser or a driver.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["CHROMIUM_FLAGS", "browser", "console_errors", "find_chromium", "open_page"]

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1400",
)
"""What Chromium runs with here: headless, in a container (no sandbox, no GPU), and quiet on the
network (no updates, sync or background requests: a test sees only what its page asks for)."""

_INSTALL = (
    "install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; "
    "scripts/test does when run as root)"
)


def find_chromium() -> tuple[str, str]:
    """The paths of Chromium and its WebDriver; ``pytest.skip`` with the reason when either is
    missing."""
    found = {}
    for name, candidates in {
        "chromium": ("chromium", "chromium-browser", "/usr/lib/chromium/chromium"),
        "chromedriver": ("chromedriver", "/usr/lib/chromium/chromedriver"),
    }.items():
        path = next((p for c in candidates if (p := shutil.which(c))), None)
        if path is None:
            pytest.skip(f"no {name} to run the browser tests: {_INSTALL}")
        found[name] = path
    return found["chromium"], found["chromedriver"]


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A headless Chromium driven by Selenium, one for the session (a fresh profile); skips
    when Selenium, Chromium or its driver is missing or the browser will not start."""
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason='selenium is not installed: pip install -e ".[testing]"'
    )
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = find_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    except WebDriverException as error:
        first = (str(error.msg or error).strip().splitlines() or ["?"])[0]
        pytest.skip(f"headless Chromium did not start ({first}); {_INSTALL}")
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
