"""The docs build shows the figures and HTML fragments a page's code writes
(docs/_ext/charseq_outputs.py)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXT = Path(__file__).resolve().parent.parent / "docs" / "_ext"

CONF = f"""
import sys
sys.path.insert(0, {str(EXT)!r})
extensions = ["myst_parser", "charseq_outputs"]
source_suffix = {{".md": "markdown"}}
suppress_warnings = ["toc.not_included"]  # pages beside index.md, in no table of contents
"""

PAGE = """---
show-output: true
---

# Figures

```python
from matplotlib.figure import Figure

fig = Figure(figsize=(2, 2))
fig.subplots().plot([0, 1, 2], [2, 0, 1])
fig.savefig("a-line.png", dpi=50)
print("drawn")
```

```python
print("no figure here")
```
"""

FRAGMENT = """---
show-output: true
---

# Fragments

```python
from html import escape
from pathlib import Path

from matplotlib.figure import Figure

Path("b-text.html").write_text(f'<pre class="probe">{escape("if a < b & c:")}</pre>')
fig = Figure(figsize=(2, 2))
fig.subplots().plot([0, 1], [1, 0])
fig.savefig("a-line.png", dpi=50)
print("written")
```

```python
print("nothing new here")
```
"""

PLAIN = """---
show-output: true
---

# Plain

Some text.

```python
x = 1 + 1
```
"""

HIDDEN = """# Not run

```python
from pathlib import Path

Path("never.html").write_text("<p>never shown</p>")
```
"""


def _build(src: Path, out: Path, conf: str = CONF) -> None:
    """Build the Sphinx project in src into out, warnings as errors."""
    (src / "conf.py").write_text(conf)
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(src), str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A small site built with charseq_outputs: {page name: its HTML}; and its source folder."""
    pytest.importorskip("sphinx", reason='install the docs extra: pip install -e ".[docs]"')
    pytest.importorskip("matplotlib", reason='install the docs extra: pip install -e ".[docs]"')
    root = tmp_path_factory.mktemp("site")
    src = root / "src"
    src.mkdir()
    pages = {"index": PAGE, "fragment": FRAGMENT, "plain": PLAIN, "hidden": HIDDEN}
    for name, text in pages.items():
        (src / f"{name}.md").write_text(text)
    _build(src, root / "html")
    html = {name: (root / "html" / f"{name}.html").read_text("utf-8") for name in pages}
    return html, src


def test_a_block_that_saves_a_png_is_followed_by_the_image(site):
    pages, src = site
    html = pages["index"]
    assert html.count('src="data:image/png;base64,') == 1  # the first block's, once
    assert 'alt="a line"' in html
    # after what the block printed, and before the next block
    assert html.index("drawn") < html.index("data:image/png") < html.index("no figure here")
    assert not list(src.glob("*.png"))  # nothing written into the source tree


def test_a_block_that_writes_html_is_followed_by_the_fragment(site):
    pages, src = site
    html = pages["fragment"]
    assert html.count('<div class="charseq-html-output">') == 1  # the first block's, once
    # what it printed, then its files in name order (a-line.png, b-text.html), then the next block
    order = [">written</pre>", "data:image/png", '<pre class="probe">', ">nothing new here</pre>"]
    positions = [html.index(marker) for marker in order]
    assert positions == sorted(positions)
    assert not list(src.glob("*.html"))  # nothing written into the source tree


def test_escaped_characters_in_a_fragment_stay_escaped(site):
    html = site[0]["fragment"]
    assert '<pre class="probe">if a &lt; b &amp; c:</pre>' in html  # inserted as written
    assert "&amp;lt;" not in html and "&amp;amp;" not in html  # not escaped twice


def test_a_page_with_no_fragment_is_unchanged(site, tmp_path):
    pages, _ = site
    assert "charseq-html-output" not in pages["plain"]
    assert "charseq-html-output" not in pages["hidden"]  # without show-output nothing runs
    # The plain page is built exactly as without the extension.
    src = tmp_path / "src"
    src.mkdir()
    (src / "index.md").write_text("# Index\n")
    (src / "plain.md").write_text(PLAIN)
    _build(src, tmp_path / "html", CONF.replace('"charseq_outputs"', ""))
    without = (tmp_path / "html" / "plain.html").read_text("utf-8")
    article = re.compile(r"<h1.*?</section>", re.DOTALL)  # the page's own content
    assert article.search(pages["plain"]).group() == article.search(without).group()
