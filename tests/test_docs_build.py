"""The documentation builds with warnings as errors (its code blocks run in docs/ via Sybil,
and the pages marked `show-output` run again in the build, to show what they print)."""

import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx", reason="install the docs extra: pip install -e .[docs]")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
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
