"""How well a classifier did: accuracy, macro-F1, per-class precision/recall/F1, the confusion.

:func:`classification_metrics` counts a :class:`ClassificationMetrics` from the true and the
predicted class of each text; everything else is computed from its confusion matrix (rows are
the true class, columns the predicted one). :meth:`ClassificationMetrics.table` is what a
terminal shows (``charseq eval``), :meth:`ClassificationMetrics.to_dict` what ``--json`` writes,
and :func:`confusion_figure` draws the matrix as a heat map (needs matplotlib, the ``plot``
extra: ``pip install "charseq[plot]"``).

The conventions are scikit-learn's ``f1_score(average="macro", zero_division=0)``:

- A class never predicted has precision 0 (not NaN), a class with no true example recall 0,
  and a class with neither a true nor a predicted example F1 0. Nothing warns about it.
- Macro-F1 is the unweighted mean of the per-class F1 over the classes that occur in the true
  labels or in the predictions. A class that occurs in neither was neither missed nor wrongly
  predicted: there is nothing to score, so it is left out of the mean (scikit-learn's default,
  ``labels=None``, does the same). A class that is only predicted counts, with F1 0: its
  predictions were all wrong. When every class has a true example (a stratified split), this
  is the plain mean over all classes.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from charseq.errors import CharseqError

NAME_WIDTH = 20
"""The most terminal columns a class name takes in :meth:`ClassificationMetrics.table`'s rows;
longer names are cut, ending in ``…``."""
TABLE_WIDTH = 100
"""The terminal columns the confusion matrix may fill before its headings are cut."""
COLUMN_WIDTH = 6
"""The fewest terminal columns a heading of the confusion matrix is cut to, when the whole
names would make it wider than :data:`TABLE_WIDTH` (eighteen classes then take about 160)."""
FIGURE_FORMATS = (".png", ".svg")
"""The file types :func:`confusion_figure` writes, chosen by the path's extension."""


def _confusion(value: Any) -> np.ndarray:
    """A read-only int64 copy of ``value``: a frozen metrics object stays unchanged."""
    confusion = np.array(value, dtype=np.int64)
    confusion.setflags(write=False)
    return confusion


@attrs.frozen(eq=False)
class ClassificationMetrics:
    """The confusion matrix of a classifier on some texts, and the scores it gives.

    Attributes:
        classes: the name of each class, in the order of the matrix's rows and columns.
        confusion: ``(C, C)`` int64: ``confusion[i, j]`` texts of true class ``i`` were
            predicted as class ``j``. Its diagonal holds the right answers.
    """

    classes: tuple[str, ...] = attrs.field(converter=tuple)
    confusion: np.ndarray = attrs.field(converter=_confusion)

    @confusion.validator
    def _check(self, _attribute: Any, confusion: np.ndarray) -> None:
        size = len(self.classes)
        if size == 0:
            raise CharseqError("classes=... is empty: metrics need at least one class")
        if confusion.shape != (size, size):
            raise CharseqError(
                f"confusion=... has shape {confusion.shape}: {size} classes need ({size}, {size})"
            )
        if (confusion < 0).any():
            raise CharseqError("confusion=... holds a negative count")
        if confusion.sum() == 0:
            raise CharseqError("confusion=... counts no texts: metrics need at least one")

    @property
    def total(self) -> int:
        """How many texts were counted."""
        return int(self.confusion.sum())

    @property
    def support(self) -> np.ndarray:
        """``(C,)`` how many texts of each class there were (the rows' sums)."""
        return self.confusion.sum(axis=1)

    @property
    def accuracy(self) -> float:
        """The share of texts predicted right (the diagonal over the total)."""
        return float(np.trace(self.confusion) / self.total)

    @property
    def scored(self) -> np.ndarray:
        """Which classes macro-F1 averages over (``(C,)`` bool), those with a true or a
        predicted text; the module's docstring says why."""
        return (self.confusion.sum(axis=1) + self.confusion.sum(axis=0)) > 0

    @property
    def macro_f1(self) -> float:
        """The unweighted mean F1 over the :attr:`scored` classes. Every class counts the
        same, however few its texts, so a classifier that ignores a rare class is seen to."""
        return float(self._scores()[2][self.scored].mean())

    def _scores(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(C,)`` precision, recall and F1 of each class, 0 where a ratio would be 0/0."""
        hits = np.diag(self.confusion).astype(np.float64)
        predicted = self.confusion.sum(axis=0)
        support = self.confusion.sum(axis=1)
        precision = _ratio(hits, predicted)
        recall = _ratio(hits, support)
        # 2 tp / (2 tp + fp + fn): the harmonic mean of precision and recall, defined
        # (as 0) where they are not.
        f1 = _ratio(2 * hits, predicted + support)
        return precision, recall, f1

    def per_class(self) -> list[dict[str, Any]]:
        """One dict a class, in the order of :attr:`classes`: its ``class`` (name),
        ``precision``, ``recall``, ``f1`` and ``support`` (how many true texts it had)."""
        precision, recall, f1 = self._scores()
        return [
            {
                "class": name,
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(self.support[i]),
            }
            for i, name in enumerate(self.classes)
        ]

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain JSON types: ``accuracy``, ``macro_f1``, ``per_class`` (see
        :meth:`per_class`), ``confusion`` (a list of rows) and ``classes``."""
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_class": self.per_class(),
            "confusion": self.confusion.tolist(),
            "classes": list(self.classes),
        }

    def table(self) -> str:
        """A plain-text report, aligned as a terminal shows it (a CJK character takes two
        columns), class names longer than :data:`NAME_WIDTH` columns cut:

        - per class: precision, recall, F1 and support;
        - accuracy and macro-F1 (and which classes macro-F1 leaves out, if any);
        - the confusion matrix, a row per true class and a column per predicted class, the
          column headings cut like the names where the matrix fits in :data:`TABLE_WIDTH`
          columns, else as far as needed, to no fewer than :data:`COLUMN_WIDTH`.
        """
        names = [_cut(name, NAME_WIDTH) for name in self.classes]
        left = max(_width(name) for name in [*names, "macro-F1", "true \\ predicted"])
        lines = [_pad("class", left) + "  precision  recall      F1  support"]
        for name, row in zip(names, self.per_class(), strict=True):
            scores = f"{row['precision']:>11.3f}{row['recall']:>8.3f}{row['f1']:>8.3f}"
            lines.append(f"{_pad(name, left)}{scores}{row['support']:>9d}")
        lines.append("")
        lines.append(f"{_pad('accuracy', left)}{self.accuracy:>27.3f}{self.total:>9d}")
        lines.append(f"{_pad('macro-F1', left)}{self.macro_f1:>27.3f}")
        left_out = [name for name, scored in zip(names, self.scored, strict=True) if not scored]
        if left_out:
            lines.append(f"(macro-F1 leaves out {', '.join(left_out)}: no true or predicted text)")
        lines.append("")
        digits = len(str(int(self.confusion.max())))
        for cut in range(NAME_WIDTH, COLUMN_WIDTH - 1, -1):  # the widest headings that fit
            heads = [_cut(name, cut) for name in self.classes]
            widths = [max(digits, _width(head)) for head in heads]
            if left + sum(2 + width for width in widths) <= TABLE_WIDTH:
                break
        lines.append(
            _pad("true \\ predicted", left)
            + "".join(f"  {_pad(h, w, right=True)}" for h, w in zip(heads, widths, strict=True))
        )
        for name, counts in zip(names, self.confusion, strict=True):
            cells = "".join(f"  {int(n):>{w}d}" for n, w in zip(counts, widths, strict=True))
            lines.append(_pad(name, left) + cells)
        return "\n".join(line.rstrip() for line in lines)


def classification_metrics(
    true: Sequence[int], predicted: Sequence[int], classes: Sequence[str]
) -> ClassificationMetrics:
    """Count how the ``predicted`` class of each text compares with its ``true`` one.

    Args:
        true: the true class of each text, as an index into ``classes``.
        predicted: the predicted class of each text, in the same order.
        classes: the name of each class; their number sets the matrix's size, so a class
            absent from both lists still has its row and column.

    Returns:
        The :class:`ClassificationMetrics`.

    Raises:
        CharseqError: no texts, lists of different lengths, a class index that is not an
            integer in ``range(len(classes))``, or classes named twice.

    >>> m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["cat", "dog"])
    >>> m.accuracy, round(m.macro_f1, 4)
    (0.75, 0.7333)
    """
    classes = tuple(str(name) for name in classes)
    if not classes:
        raise CharseqError("classes=... is empty: metrics need at least one class")
    twice = sorted({name for name in classes if classes.count(name) > 1})
    if twice:
        raise CharseqError(f"classes=... names {', '.join(map(repr, twice))} more than once")
    true_ = _indices(true, "true", len(classes))
    predicted_ = _indices(predicted, "predicted", len(classes))
    if len(true_) != len(predicted_):
        raise CharseqError(
            f"true=... has {len(true_)} labels but predicted=... has {len(predicted_)}",
            argument=("true", "predicted"),
        )
    if len(true_) == 0:
        raise CharseqError("true=... is empty: metrics need at least one text", argument="true")
    size = len(classes)
    confusion = np.bincount(true_ * size + predicted_, minlength=size * size)
    return ClassificationMetrics(classes, confusion.reshape(size, size))


def confusion_figure(
    metrics: ClassificationMetrics,
    path: str | Path,
    *,
    normalize: bool = True,
    title: str | None = None,
    dpi: int = 110,
) -> Path:
    """Draw ``metrics``' confusion matrix as a heat map into ``path`` (PNG or SVG, by its
    extension): true classes down the side, predicted ones along the bottom, each cell
    written with its count, or with ``normalize`` its share of its row (the true class's
    texts, so the diagonal is each class's recall). Colour follows what is written.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        CharseqError: matplotlib is not installed (the ``plot`` extra), or ``path`` is not
            a ``.png`` or ``.svg`` file.
    """
    path = Path(path)
    if path.suffix.lower() not in FIGURE_FORMATS:
        raise CharseqError(
            f"{path}: a confusion figure is written as .png or .svg, not {path.suffix or '(none)'}",
            argument="path",
        )
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise CharseqError(
            "drawing the confusion matrix needs matplotlib, which is not installed: "
            'pip install "charseq[plot]" (or pip install matplotlib)'
        ) from None
    counts = metrics.confusion
    support = counts.sum(axis=1, keepdims=True)
    values = counts / np.maximum(support, 1) if normalize else counts.astype(np.float64)
    size = len(metrics.classes)
    side = min(max(3.0 + 0.45 * size, 4.5), 14.0)
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else max(1, values.max()))
    bar = fig.colorbar(
        image, ax=ax, shrink=0.8, label="share of the true class" if normalize else "texts"
    )
    if not normalize:  # whole texts: no 0.25 on the scale
        bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    names = [_cut(name, NAME_WIDTH) for name in metrics.classes]
    ax.set_xticks(
        range(size), names, rotation=45 if size > 3 else 0, ha="right" if size > 3 else "center"
    )
    ax.set_yticks(range(size), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if size <= 30:  # more cells than that are too small to write in
        fontsize = 10 if size <= 8 else 8 if size <= 16 else 7
        middle = (1 if normalize else max(1, values.max())) / 2
        for i in range(size):
            for j in range(size):
                if counts[i, j] == 0:  # a plain grey 0: the eye goes to the cells that hold texts
                    ax.text(j, i, "0", ha="center", va="center", color="0.6", fontsize=fontsize)
                    continue
                text = f"{values[i, j]:.2f}" if normalize else str(int(counts[i, j]))
                colour = "white" if values[i, j] > middle else "black"
                ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=fontsize)
    heading = f"accuracy {metrics.accuracy:.3f}, macro-F1 {metrics.macro_f1:.3f}"
    ax.set_title(f"{title}\n{heading}" if title else heading, loc="left")
    fig.savefig(path, dpi=dpi)
    return path


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """``top / bottom`` element-wise, 0 where ``bottom`` is 0."""
    return np.divide(top, bottom, out=np.zeros_like(top, dtype=np.float64), where=bottom > 0)


def _indices(labels: Sequence[int], argument: str, size: int) -> np.ndarray:
    """``labels`` as a 1-D int64 array, checked to lie in ``range(size)``."""
    array = np.asarray(labels)
    if array.ndim != 1:
        raise CharseqError(
            f"{argument}=... must be a flat list of class indices", argument=argument
        )
    if array.size == 0:
        return array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise CharseqError(
            f"{argument}=... holds {array.dtype} values, not class indices (integers); "
            "map label names to their index in classes first",
            argument=argument,
        )
    bad = array[(array < 0) | (array >= size)]
    if bad.size:
        raise CharseqError(
            f"{argument}=... holds class {int(bad[0])}, outside range({size}) "
            f"(there are {size} classes)",
            argument=argument,
        )
    return array.astype(np.int64)


def _width(text: str) -> int:
    """How many terminal columns ``text`` takes: wide (CJK) characters two, combining marks
    none, everything else one."""
    return sum(_char_width(char) for char in text)


def _char_width(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _cut(text: str, width: int) -> str:
    """``text`` if it fits in ``width`` columns, else as much as fits with ``…`` at the end.
    Tabs, newlines and other control characters become spaces: a name stays on its line."""
    text = "".join(" " if unicodedata.category(char).startswith("C") else char for char in text)
    if _width(text) <= width:
        return text
    kept, used = [], 0
    for char in text:
        if used + _char_width(char) > width - 1:
            break
        kept.append(char)
        used += _char_width(char)
    return "".join(kept) + "…"


def _pad(text: str, width: int, *, right: bool = False) -> str:
    """``text`` padded with spaces to ``width`` terminal columns, on the right (or the left)."""
    fill = " " * max(0, width - _width(text))
    return fill + text if right else text + fill
