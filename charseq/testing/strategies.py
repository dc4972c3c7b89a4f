"""Hypothesis strategies for charseq components: coherent shapes, bounded tensors, texts.

Sizes are small on purpose (a check runs each example through a real cell); raise them in your own
tests with the keyword arguments. Tensors are drawn as NumPy arrays with finite, bounded elements
and converted with ``torch.from_numpy``, so Hypothesis can shrink the values.

Example::

    from hypothesis import given
    from charseq.testing import strategies as cst

    @given(cst.cell_inputs())
    def test_my_cell(dims_and_x):
        dims, x = dims_and_x
        out, state = MyCell(dims.input_size, dims.hidden_size)(x)
        assert out.shape == (dims.batch, dims.time, dims.hidden_size)
"""

from __future__ import annotations

import string
from typing import Any

import attrs
import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = [
    "TEXTS",
    "CellDims",
    "cell_dims",
    "cell_inputs",
    "float_tensors",
    "next_token_logits",
    "prose",
    "seeds",
    "texts",
]


@attrs.frozen
class CellDims:
    """One coherent draw of the sizes a cell sees: ``x`` is ``(batch, time, input_size)``."""

    batch: int
    time: int
    input_size: int
    hidden_size: int


@st.composite
def cell_dims(
    draw: st.DrawFn, *, max_batch: int = 4, max_time: int = 5, max_size: int = 5
) -> CellDims:
    """Batch, time, input and hidden sizes, each at least 1."""
    return CellDims(
        batch=draw(st.integers(1, max_batch)),
        time=draw(st.integers(1, max_time)),
        input_size=draw(st.integers(1, max_size)),
        hidden_size=draw(st.integers(1, max_size)),
    )


def seeds() -> st.SearchStrategy[int]:
    """Seeds for ``torch.manual_seed`` / ``torch.Generator.manual_seed``."""
    return st.integers(0, 2**31 - 1)


_NUMPY_DTYPES = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


def float_tensors(
    shape: tuple[int, ...], *, dtype: torch.dtype = torch.float32, bound: float = 2.0
) -> st.SearchStrategy[torch.Tensor]:
    """Tensors of ``shape`` with finite elements in ``[-bound, bound]``."""
    np_dtype = _NUMPY_DTYPES[dtype]
    width = np.dtype(np_dtype).itemsize * 8
    elements = st.floats(-bound, bound, allow_nan=False, allow_infinity=False, width=width)
    return hnp.arrays(np_dtype, shape, elements=elements).map(torch.from_numpy)


@st.composite
def cell_inputs(
    draw: st.DrawFn,
    dims: st.SearchStrategy[CellDims] | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    bound: float = 2.0,
) -> tuple[CellDims, torch.Tensor]:
    """``(dims, x)`` with ``x`` of shape ``(dims.batch, dims.time, dims.input_size)``."""
    drawn = draw(cell_dims() if dims is None else dims)
    shape = (drawn.batch, drawn.time, drawn.input_size)
    return drawn, draw(float_tensors(shape, dtype=dtype, bound=bound))


@st.composite
def prose(draw: st.DrawFn, *, max_words: int = 12) -> str:
    """Plain English-like text: ASCII words, single spaces, some punctuation and line breaks."""
    words = draw(
        st.lists(
            st.text(string.ascii_letters, min_size=1, max_size=8), min_size=1, max_size=max_words
        )
    )
    out = []
    for i, word in enumerate(words):
        if i:
            out.append(draw(st.sampled_from([" ", " ", " ", "\n"])))
        out.append(word + draw(st.sampled_from(["", "", "", ",", ".", "!", "?", ";", ":"])))
    return "".join(out)


def _unicode(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    # Surrogates cannot be encoded to UTF-8, so no tokenizer can claim them.
    characters = st.characters(exclude_categories=("Cs",))
    return st.text(characters, min_size=min_size, max_size=max_size)


def _printable(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.text(string.printable, min_size=min_size, max_size=max_size)


def _ascii_letters(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.text(string.ascii_letters + " ", min_size=min_size, max_size=max_size)


def _prose(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    # A prose text is never empty; cut to max_size without leaving trailing whitespace.
    return prose().map(lambda text: text[:max_size].rstrip())


TEXTS = {
    "unicode": _unicode,
    "printable": _printable,
    "ascii_letters": _ascii_letters,
    "prose": _prose,
}
"""Named text families a tokenizer can claim through its ``texts`` tag."""


def texts(
    kind: Any = "unicode", *, min_size: int = 1, max_size: int = 40
) -> st.SearchStrategy[str]:
    """Texts of a named family (see :data:`TEXTS`), of an alphabet, or ``kind`` itself if it is a
    strategy.

    ``"unicode"`` is any text without surrogates; ``"printable"`` is ``string.printable``;
    ``"ascii_letters"`` letters and spaces; ``"prose"`` words, punctuation and line breaks.
    ``{"alphabet": "abc ."}`` is any text of those characters: a tokenizer plugin can declare it
    in its ``__charseq_tags__`` without importing Hypothesis at run time.
    """
    if isinstance(kind, st.SearchStrategy):
        return kind
    if isinstance(kind, dict):
        alphabet = kind.get("alphabet")
        if set(kind) != {"alphabet"} or not isinstance(alphabet, str) or not alphabet:
            raise ValueError(f"a texts table is {{'alphabet': 'some characters'}}, got {kind!r}")
        return st.text(alphabet=alphabet, min_size=min_size, max_size=max_size)
    try:
        family = TEXTS[kind]
    except KeyError:
        raise ValueError(f"unknown text family {kind!r}; known: {', '.join(TEXTS)}") from None
    return family(min_size, max_size)


@st.composite
def next_token_logits(
    draw: st.DrawFn, *, max_batch: int = 4, max_vocab: int = 12, bound: float = 5.0
) -> torch.Tensor:
    """Next-token logits ``(B, V)`` with finite elements and ``V >= 2``."""
    batch = draw(st.integers(1, max_batch))
    vocab = draw(st.integers(2, max_vocab))
    return draw(float_tensors((batch, vocab), bound=bound))
