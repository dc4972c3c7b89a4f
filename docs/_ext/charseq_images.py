"""Images embedded in the page itself: a docutils image node whose source is a ``data:`` URI.

The figures the pages' code draws (``charseq_outputs``) and the drawings of ``charseq_drawings``
are made by the build, so nothing is written into the source tree and no image file is
committed; the HTML carries the image's bytes.
"""

from __future__ import annotations

import base64

from docutils import nodes


def data_image(data: bytes, mime: str, alt: str, classes: list[str]) -> nodes.image:
    """An image node showing ``data`` (of MIME type ``mime``) embedded as a data: URI."""
    uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    # A data: URI's only candidate is "?" (what Sphinx's image collector sets for one; a node
    # made after that collector has run, at doctree-read, must set it itself).
    return nodes.image(uri=uri, candidates={"?": uri}, alt=alt, classes=classes)
