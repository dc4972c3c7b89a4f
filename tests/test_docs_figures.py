"""The docs build shows the figures a page's code draws (docs/_ext/charseq_outputs.py)."""

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


def test_a_block_that_saves_a_png_is_followed_by_the_image(tmp_path):
    pytest.importorskip("sphinx", reason='install the docs extra: pip install -e ".[docs]"')
    pytest.importorskip("matplotlib", reason='install the docs extra: pip install -e ".[docs]"')
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text(CONF)
    (src / "index.md").write_text(PAGE)
    out = tmp_path / "html"
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(src), str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    html = (out / "index.html").read_text("utf-8")
    assert html.count('src="data:image/png;base64,') == 1  # the first block's, once
    assert 'alt="a line"' in html
    # after what the block printed, and before the next block
    assert html.index("drawn") < html.index("data:image/png") < html.index("no figure here")
    assert not list(src.glob("*.png"))  # nothing written into the source tree
