"""The documentation builds with warnings as errors (its code blocks run in docs/ via Sybil,
and the pages marked `show-output` run again in the build, to show what they print)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx", reason='install the docs extra: pip install -e ".[docs]"')
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-j",
            "auto",  # pages are read, and their code run, on every core (docs/conf.py)
            "-b",
            "html",
            str(DOCS),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    # Pages with `show-output: true` show what their code printed, e.g. the samplers' texts.
    sampling = (tmp_path / "html" / "tutorial" / "sampling.html").read_text("utf-8")
    assert sampling.count('class="charseq-output') >= 4
    assert "greedy: 'def " in sampling or "greedy: &#39;def " in sampling
    # Figures drawn by the pages' own code (a block that saves a PNG) are embedded in them.
    tutorials = "first-model min-char-rnn sampling inside-the-cells what-the-neurons-learn"
    for page in tutorials.split():
        html = (tmp_path / "html" / "tutorial" / f"{page}.html").read_text("utf-8")
        assert 'class="charseq-figure" src="data:image/png;base64,' in html, page
    # HTML a page's code wrote (a scored text coloured by surprise) is embedded as HTML.
    assert 'class="charseq-html-output"' in sampling and 'class="charseq-surprise"' in sampling
    # ... and units coloured over the text and the model's guesses (what-the-neurons-learn).
    neurons = (tmp_path / "html" / "tutorial" / "what-the-neurons-learn.html").read_text("utf-8")
    assert neurons.count('<div class="charseq-unit">') == 2, "the line-position and quote units"
    assert '<table class="charseq-guesses">' in neurons
    # The poem web app's page shows the served page, screenshotted in headless Chromium by the
    # page's own code (the test command installs Chromium; without it the page prints a note).
    app = (tmp_path / "html" / "tutorial" / "a-poem-web-app.html").read_text("utf-8")
    assert '<img alt="poem web app" class="charseq-figure" src="data:image/png;base64,' in app
    # The drawings (docs/_ext/charseq_drawings.py) are drawn by the build, as SVG.
    for page in ("hello-by-hand", "inside-the-cells", "sequence-types"):
        html = (tmp_path / "html" / "tutorial" / f"{page}.html").read_text("utf-8")
        assert 'src="data:image/svg+xml;base64,' in html, page
    _assert_self_contained(tmp_path / "html")


# What a page loads: scripts, styles, fonts, images. A link to read elsewhere (<a href>) is fine.
_LOADS_IN_HTML = re.compile(
    r"<(?:script|img|source|iframe)\b[^>]*?\ssrc=[\"']?([^\"'\s>]+)|<link\b[^>]*?\shref=[\"']?([^\"'\s>]+)",
    re.IGNORECASE,
)
_LOADS_IN_CSS = re.compile(
    r"@import\s+(?:url\(\s*)?[\"']?([^\"'\s);]+)|url\(\s*[\"']?([^\"'\s)]+)", re.IGNORECASE
)
_EXTERNAL = re.compile(r"^(?:https?:)?//", re.IGNORECASE)


def _assert_self_contained(html):
    """The built site works offline: no page, style sheet or inline style loads anything from
    another host, and the MathJax that the pages with maths load is in the site itself."""
    external = []
    for path in [*html.rglob("*.html"), *html.rglob("*.css")]:
        text = path.read_text("utf-8", errors="replace")
        patterns = [_LOADS_IN_CSS] if path.suffix == ".css" else [_LOADS_IN_HTML, _LOADS_IN_CSS]
        for pattern in patterns:
            for match in pattern.finditer(text):
                url = next(group for group in match.groups() if group)
                if _EXTERNAL.match(url):
                    external.append((str(path.relative_to(html)), url))
    assert not external, external

    page = html / "tutorial" / "sampling.html"  # a page with maths
    scripts = re.findall(r"<script\b[^>]*?\ssrc=[\"']?([^\"'\s>]+)", page.read_text("utf-8"))
    mathjax = [src for src in scripts if "mathjax" in src.lower()]
    assert mathjax, "a page with maths loads no MathJax"
    for src in mathjax:
        assert (page.parent / src.split("?")[0]).resolve().is_file(), src
    fonts = html / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2"
    assert any(fonts.glob("*.woff")), "MathJax's fonts are not in the site"


ROOT = DOCS.parent
_PIP_INSTALL = re.compile(r"\bpip +install\b[^\n`]*")


def _pip_installs():
    """Every ``pip install ...`` the project shows: docs, READMEs, messages and scripts."""
    files = [
        *ROOT.glob("*.md"),
        *(p for p in DOCS.rglob("*.md") if "_build" not in p.parts),
        *ROOT.glob("plugins/*/*.md"),
        *ROOT.glob("charseq/**/*.py"),
        *ROOT.glob("tests/*.py"),
        *ROOT.glob("scripts/*"),
    ]
    for path in files:
        for line in path.read_text("utf-8").splitlines():
            for match in _PIP_INSTALL.finditer(line):
                yield path.relative_to(ROOT), match.group(0)


def test_every_pip_install_quotes_its_extras():
    """zsh (macOS's shell) takes ``charseq[testing]`` for a glob and fails with "no matches
    found": every extra shown in a ``pip install`` is quoted."""
    shown = list(_pip_installs())
    assert any('"charseq[testing]"' in command for _, command in shown)
    bare = [
        (str(path), command)
        for path, command in shown
        if any("[" in word and word[0] not in "\"'" for word in command.split())
    ]
    assert not bare, bare
