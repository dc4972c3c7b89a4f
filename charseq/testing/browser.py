"""A headless Chromium driven by Selenium, for code that opens a page in a real browser: the
tests of the report (``charseq inspect --html``) and of ``charseq serve``'s page, and the
tutorial that takes a screenshot of that page.

It uses Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``,
``/usr/bin/chromedriver``; found on the ``PATH`` too) and gives Selenium both paths, so Selenium
never looks for (or downloads) a browser or a driver. Where either is missing, or Selenium is,
:class:`NoBrowser` says what to install; the tests skip with that reason and the tutorial prints it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM_FLAGS", "INSTALL", "NoBrowser", "find_chromium", "headless_chromium"]

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
network (no updates, sync or background requests: a page gets only what it asks for)."""

INSTALL = (
    "install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; "
    "scripts/test does when run as root)"
)


class NoBrowser(RuntimeError):
    """No headless Chromium here: Selenium, Chromium or its driver is missing, or it would not
    start. The message says which, and what to install."""


def find_chromium() -> tuple[str, str]:
    """The paths of Chromium and its WebDriver; :class:`NoBrowser` when either is missing."""
    found = {}
    for name, candidates in {
        "chromium": ("chromium", "chromium-browser", "/usr/lib/chromium/chromium"),
        "chromedriver": ("chromedriver", "/usr/lib/chromium/chromedriver"),
    }.items():
        path = next((p for c in candidates if (p := shutil.which(c))), None)
        if path is None:
            raise NoBrowser(f"no {name}: {INSTALL}")
        found[name] = path
    return found["chromium"], found["chromedriver"]


def headless_chromium(profile: str | Path) -> Any:
    """A started headless Chromium (a Selenium ``WebDriver``) with a fresh profile in the
    directory ``profile``, keeping the page's console for ``get_log("browser")``. The caller
    quits it. :class:`NoBrowser` when it cannot be had."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise NoBrowser('selenium is not installed: pip install "charseq[testing]"') from None

    chromium, chromedriver = find_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    except WebDriverException as error:
        first = (str(error.msg or error).strip().splitlines() or ["?"])[0]
        raise NoBrowser(f"headless Chromium did not start ({first}); {INSTALL}") from None
