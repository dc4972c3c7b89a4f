"""The tutorial's drawings (docs/_ext/charseq_drawings.py): each renders a sound SVG that fits the
page, with no label over another; the ``drawing`` directive embeds them where the pages say, and
an unknown name is an error that lists the known ones."""

import importlib
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from itertools import combinations
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
EXT = DOCS / "_ext"
SVG = "{http://www.w3.org/2000/svg}"
COLUMN_PT = 7.85 * 72  # the content column at 1280 px (752 px at 96 px per inch), in points


@pytest.fixture(scope="module")
def drawings():
    """The extension module, imported from docs/_ext as Sphinx imports it."""
    pytest.importorskip("sphinx", reason='install the docs extra: pip install -e ".[docs]"')
    pytest.importorskip("matplotlib", reason='install the docs extra: pip install -e ".[docs]"')
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(EXT))
        yield importlib.import_module("charseq_drawings")


def _points(length: str) -> float:
    assert length.endswith("pt"), length
    return float(length[:-2])


@pytest.mark.parametrize("name", ["unrolled-rnn", "lstm-cell", "gru-cell", "sequence-shapes"])
def test_each_drawing_is_an_svg_that_fits_the_page(drawings, name):
    svg = drawings.render(name)
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    width, height = _points(root.get("width")), _points(root.get("height"))
    assert 5 * 72 <= width <= COLUMN_PT  # shown at its own size, so its text at its own size
    assert 2 * 72 <= height <= 6 * 72
    assert len(list(root.iter(f"{SVG}path"))) >= 20  # boxes, arrows and the glyphs of its text
    assert not list(root.iter(f"{SVG}text"))  # text as paths: no font needed to show it
    assert not list(root.iter(f"{SVG}image"))  # nothing embedded or loaded from elsewhere
    assert drawings.render(name) == svg  # the same bytes from every build


def test_the_directive_knows_every_drawing_and_its_plain_alt_text(drawings):
    assert set(drawings.DRAWINGS) == {"unrolled-rnn", "lstm-cell", "gru-cell", "sequence-shapes"}
    for drawing in drawings.DRAWINGS.values():
        assert 40 < len(drawing.alt) < 300
        assert not set(drawing.alt) & set("<>&\"'$\\"), drawing.alt  # read as it is written


@pytest.mark.parametrize("name", ["unrolled-rnn", "lstm-cell", "gru-cell", "sequence-shapes"])
def test_no_label_overlaps_another_or_leaves_the_drawing(drawings, name):
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    with matplotlib.rc_context(drawings.STYLE):
        figure = drawings.DRAWINGS[name].draw().figure
        renderer = FigureCanvasAgg(figure).get_renderer()
        texts = [t for t in figure.findobj(matplotlib.text.Text) if t.get_text()]
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    assert len(boxes) >= 8
    page = figure.bbox
    for text, box in boxes:
        inside = page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0
        assert inside and box.y1 <= page.y1, f"{text!r} is cut off: {box} outside {page}"
    for (a, box_a), (b, box_b) in combinations(boxes, 2):
        assert not box_a.overlaps(box_b), f"{a!r} overlaps {b!r}"


CONF = f"""
import sys
sys.path.insert(0, {str(EXT)!r})
extensions = ["myst_parser", "sphinx.ext.mathjax", "charseq_drawings"]
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3
source_suffix = {{".md": "markdown"}}
"""


def _build(src: Path, out: Path, *warnings_as_errors: str) -> subprocess.CompletedProcess:
    (src / "conf.py").write_text(CONF)
    command = [sys.executable, "-m", "sphinx", *warnings_as_errors, "-q", "-b", "html"]
    return subprocess.run([*command, str(src), str(out)], capture_output=True, text=True)


def test_a_drawing_is_embedded_with_its_alt_and_caption(drawings, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "index.md").write_text(
        "# Drawings\n\n"
        "```{drawing} gru-cell\n:alt: The GRU, drawn\n:caption: The *GRU* cell.\n```\n\n"
        "```{drawing} unrolled-rnn\n```\n"
    )
    done = _build(src, tmp_path / "html", "-W")
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "html" / "index.html").read_text("utf-8")
    images = re.findall(r'<img alt="([^"]*)" class="charseq-drawing" src="([^"]*)"', html)
    assert [alt for alt, _ in images] == ["The GRU, drawn", drawings.DRAWINGS["unrolled-rnn"].alt]
    assert all(src.startswith("data:image/svg+xml;base64,") for _, src in images)
    assert re.search(r"<figcaption>\s*<p><span class=\"caption-text\">The <em>GRU</em> cell", html)
    assert sorted(path.name for path in src.iterdir()) == ["conf.py", "index.md"]  # no files


def test_an_unknown_drawing_is_an_error_listing_the_known_ones(drawings, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "index.md").write_text("# Drawings\n\n```{drawing} lstm\n```\n")
    done = _build(src, tmp_path / "html", "-W")
    assert done.returncode != 0
    known = "unrolled-rnn, lstm-cell, gru-cell, sequence-shapes"
    assert "index.md:3: ERROR: unknown drawing 'lstm'; the known drawings are: " + known in (
        done.stderr
    )


# Where the tutorial pages place each drawing: (page, drawing, section it is in).
PLACES = [
    ("hello-by-hand", "unrolled-rnn", "the-recurrence"),
    ("inside-the-cells", "lstm-cell", "the-lstm-gate-by-gate"),
    ("inside-the-cells", "gru-cell", "the-gru-gate-by-gate"),
    ("sequence-types", "sequence-shapes", "sequence-types"),
]


def test_the_tutorial_pages_show_their_drawings(drawings, tmp_path):
    """The pages themselves, built without running their code (that is the docs build's and
    Sybil's job): each drawing is in its section, as an SVG."""
    src = tmp_path / "src"
    shutil.copytree(DOCS / "tutorial", src / "tutorial")
    (src / "index.md").write_text("# Tutorial\n\n```{toctree}\n:glob:\ntutorial/*\n```\n")
    done = _build(src, tmp_path / "html")  # links out of the tutorial have no target here
    assert done.returncode == 0, done.stderr
    assert "drawing" not in done.stderr, done.stderr
    for page, name, section in PLACES:
        html = (tmp_path / "html" / "tutorial" / f"{page}.html").read_text("utf-8")
        alt = drawings.DRAWINGS[name].alt
        image = html.index(f'<img alt="{alt}" class="charseq-drawing" src="data:image/svg+xml;')
        opened = re.search(f'<section[^>]* id="{section}"', html).start()
        following = html.find("<section", opened + 1)
        assert opened < image, (page, name)
        assert following == -1 or image < following, (page, name)  # before the next section
