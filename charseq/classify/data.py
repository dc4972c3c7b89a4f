"""Labelled data for classification: reading it, checking it, and a stratified split.

:func:`read_labelled` reads one of three layouts and returns a :class:`Labelled` (the texts, a
label per text, and where each came from, ``"path:line"``):

**A table**, ``.tsv`` (fields split by tabs) or ``.csv`` (by commas), parsed by Python's
:mod:`csv` module, so a field may be quoted (``"a text, with a comma",label``; a quote inside
a quoted field is doubled, ``""``), in both kinds. Which columns hold the text and the label:

- ``text_column=`` / ``label_column=`` name them (either one; the other keeps its default name,
  ``"text"`` or ``"label"``). The first row is then the header, and it must hold both names.
- Otherwise, when the first row holds a cell ``text`` or a cell ``label``, it is the header and
  must hold both (other columns are ignored).
- Otherwise the file has no header and exactly two columns: the text, then the label.

Column names match whatever their case and the spaces around them (``Text``, ``LABEL``). Every
row has as many fields as the header (or two, without one).

**JSON Lines**, ``.jsonl``: one object a line, ``{"text": ..., "label": ...}``; other keys are
ignored, and ``text_column=`` / ``label_column=`` name other keys. A text is a JSON string; a
label is a string or an integer (read as its decimal string, ``3`` -> ``"3"``).

**A directory** of ``.txt`` files, one per label, the label being the file's name without
``.txt``, and one example a line: the layout of PyTorch's names tutorial
(``data/names/English.txt``, ``data/names/French.txt``, ...). Other files are ignored.

In every layout, blank lines (empty or only spaces) are skipped; a text keeps its characters as
they are (only the line ending goes), a label loses the spaces around it; a byte-order mark at
the start of a file is dropped. A file is decoded with ``encoding=`` (UTF-8 by default).

Anything wrong stops the read with a :class:`LabelledDataError` whose message begins with the
file and, where there is one, the line (``names.tsv:12: empty text``): a path that does not
exist, an extension not listed above, a directory with no ``.txt`` file, a file that is not
valid text in its encoding, a missing column or key, a row with the wrong number of fields, a
line that is not a JSON object, an empty text or label, and, for training data
(``for_training=True``, the default), a label with a single example or fewer than two labels.

:func:`stratified_split` cuts the examples into train, val and test parts that keep each
label's share, the same for the same seed.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from charseq.errors import CharseqError

__all__ = [
    "Labelled",
    "LabelledDataError",
    "LabelledSplits",
    "read_labelled",
    "stratified_split",
]

TABLE_SUFFIXES = {".tsv": "\t", ".csv": ","}
"""The table extensions :func:`read_labelled` reads, each with its field delimiter."""

_READ = "labelled data is a .tsv, .csv or .jsonl file, or a directory of .txt files (one per label)"


class LabelledDataError(CharseqError, ValueError):
    """Labelled data cannot be read or split as asked; the message begins ``file:line:``.

    Attributes:
        path: the file (or directory) the error is about, as named in the message, or None.
        line: the 1-based line number in ``path``, or None when the error is about the whole file.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        argument: str | tuple[str, ...] | None = None,
    ) -> None:
        super().__init__(message, argument=argument)
        self.path = path
        self.line = line


def _error(path: str, line: int | None, message: str, **kwargs: Any) -> LabelledDataError:
    where = path if line is None else f"{path}:{line}"
    return LabelledDataError(f"{where}: {message}", path=path, line=line, **kwargs)


@attrs.frozen
class Labelled:
    """Texts with a label each, and where each came from.

    Attributes:
        texts: the texts, in file order.
        labels: one label name per text.
        sources: where each text came from, ``"path:line"``, for messages.
    """

    texts: tuple[str, ...] = attrs.field(converter=tuple)
    labels: tuple[str, ...] = attrs.field(converter=tuple)
    sources: tuple[str, ...] = attrs.field(converter=tuple)

    def __attrs_post_init__(self) -> None:
        if not len(self.texts) == len(self.labels) == len(self.sources):
            raise ValueError(
                f"texts, labels and sources differ in length: {len(self.texts)}, "
                f"{len(self.labels)}, {len(self.sources)}"
            )

    def __len__(self) -> int:
        """The number of examples."""
        return len(self.texts)

    @property
    def classes(self) -> tuple[str, ...]:
        """The label names, sorted, each once; a label's id is its index here."""
        return tuple(sorted(set(self.labels)))

    def label_ids(self) -> np.ndarray:
        """Each text's label as its index into :attr:`classes` (int64, one per text)."""
        index = {name: i for i, name in enumerate(self.classes)}
        return np.array([index[label] for label in self.labels], dtype=np.int64)


def read_labelled(
    path: str | Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    encoding: str = "utf-8",
    for_training: bool = True,
) -> Labelled:
    """Read labelled examples from a ``.tsv``, ``.csv`` or ``.jsonl`` file or a directory.

    The module's docstring describes the layouts and the errors.

    Args:
        path: the file, or a directory holding one ``.txt`` file per label.
        text_column, label_column: the header cells (or JSON keys) of the text and the label;
            by default ``"text"`` and ``"label"`` (tables: detected, see above). Not for a
            directory.
        encoding: the files' text encoding.
        for_training: also check what training needs: every label has at least two examples
            (one to learn from, one to check on) and there are at least two labels. Pass False
            to read a file that is only evaluated on.

    Raises:
        LabelledDataError: the data cannot be read, or fails a check; the message names the
            file and the line.
    """
    name = str(path)
    path = Path(path)
    if path.is_dir():
        if text_column is not None or label_column is not None:
            raise _error(
                name,
                None,
                "is a directory, where each file's name is the label: text_column=... and "
                "label_column=... are for .tsv, .csv and .jsonl files",
                argument=("text_column", "label_column"),
            )
        examples = list(_read_directory(path, name, encoding))
    elif not path.exists():
        raise _error(name, None, "no such file or directory")
    else:
        suffix = path.suffix.lower()
        columns = (text_column or "text", label_column or "label")
        named = text_column is not None or label_column is not None
        if suffix in TABLE_SUFFIXES:
            text = _decode(path, name, encoding)
            examples = list(_read_table(text, name, TABLE_SUFFIXES[suffix], columns, named))
        elif suffix == ".jsonl":
            examples = list(_read_jsonl(_decode(path, name, encoding), name, columns))
        else:
            shown = f"'{suffix}' files" if suffix else "a file without an extension"
            raise _error(name, None, f"cannot read {shown}: {_READ}")
    if not examples:
        raise _error(
            name, None, "holds no examples (every line is blank, or the header is the only row)"
        )
    texts, labels, sources = zip(*examples, strict=True)
    data = Labelled(texts=texts, labels=labels, sources=sources)
    if for_training:
        _check_for_training(data, name)
    return data


# One example: (text, label, "path:line").
_Example = tuple[str, str, str]


def _decode(path: Path, name: str, encoding: str) -> str:
    """The text of a file, without a leading byte-order mark."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise _error(name, None, f"cannot read: {error.strerror or error}") from None
    try:
        text = data.decode(encoding)
    except LookupError:
        raise _error(
            name,
            None,
            f"unknown encoding {encoding!r} (e.g. encoding='utf-8')",
            argument="encoding",
        ) from None
    except UnicodeDecodeError as error:
        line = data[: error.start].decode(encoding, "replace").count("\n") + 1
        bad = data[error.start : min(error.end, error.start + 4)].hex(" ")
        raise _error(
            name,
            line,
            f"not valid {encoding} text at byte offset {error.start} (byte(s) {bad}: "
            f"{error.reason}). Pass the file's encoding, e.g. encoding='latin-1' or "
            "encoding='cp1252'",
            argument="encoding",
        ) from None
    except UnicodeError as error:  # e.g. UTF-16 without a byte-order mark
        raise _error(
            name,
            None,
            f"cannot be read as {encoding} ({error}); pass the file's encoding, e.g. "
            "encoding='utf-16-le'",
            argument="encoding",
        ) from None
    return text.removeprefix("\ufeff")


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` for each line that is not blank, its line ending removed.

    Lines end at ``\\n`` only (with a ``\\r`` before it dropped too): other characters that
    :meth:`str.splitlines` would split at stay in the text.
    """
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if line.strip():
            yield number, line


def _read_directory(directory: Path, name: str, encoding: str) -> Iterator[_Example]:
    files = sorted(
        p
        for p in directory.iterdir()
        if p.suffix.lower() == ".txt" and p.is_file() and not p.name.startswith(".")
    )
    if not files:
        found = sorted(p.name for p in directory.iterdir())
        listing = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise _error(
            name,
            None,
            "holds no .txt files; a directory of labelled data holds one .txt file per label, "
            "named after it (English.txt), one example a line"
            + (f" (found: {listing})" if found else " (it is empty)"),
        )
    for file in files:
        file_name = str(Path(name) / file.name)
        label = file.stem.strip()
        if not label:
            raise _error(file_name, None, "a file name without a label before '.txt'")
        count = 0
        for number, line in _lines(_decode(file, file_name, encoding)):
            count += 1
            yield line, label, f"{file_name}:{number}"
        if not count:
            raise _error(
                file_name, None, f"holds no examples for the label {label!r} (every line blank)"
            )


def _read_table(
    text: str, name: str, delimiter: str, columns: tuple[str, str], named: bool
) -> Iterator[_Example]:
    rows = _table_rows(text, name, delimiter)
    first = next(rows, None)
    if first is None:
        return
    number, cells = first
    keys = [cell.strip().casefold() for cell in cells]
    wanted = [column.casefold() for column in columns]
    has_header = named or any(key in wanted for key in keys)
    if has_header:
        at = [
            _column(keys, cells, column, role, name, number)
            for column, role in zip(columns, ("text", "label"), strict=True)
        ]
        width = len(cells)
    else:
        at, width = [0, 1], 2
        if len(cells) != 2:
            raise _error(
                name,
                number,
                f"{_fields(len(cells))} and no header. A file without a header has two "
                "columns, the text then the label; otherwise name the columns in a first row "
                "(text, label), or pass text_column=... and label_column=...",
                argument=("text_column", "label_column"),
            )
        rows = itertools.chain([first], rows)
    tabs = delimiter == "\t"
    for number, cells in rows:
        if len(cells) != width:
            source = "the header has" if has_header else "a file without a header has"
            hint = "a tab" if tabs else "a comma"
            raise _error(
                name,
                number,
                f"{_fields(len(cells))}, but {source} {width}. A text that holds {hint} must "
                'be quoted: "..."',
            )
        yield _example(cells[at[0]], cells[at[1]], name, number)


def _fields(n: int) -> str:
    return "1 field" if n == 1 else f"{n} fields"


def _column(
    keys: list[str], cells: list[str], column: str, role: str, name: str, number: int
) -> int:
    """The index of header cell ``column`` (matched by ``keys``, the cells casefolded)."""
    matches = [i for i, key in enumerate(keys) if key == column.casefold()]
    if len(matches) == 1:
        return matches[0]
    found = ", ".join(repr(cell) for cell in cells)
    if matches:
        raise _error(name, number, f"{len(matches)} columns named {column!r} in the header")
    raise _error(
        name,
        number,
        f"no {role} column {column!r} in the header; the columns are {found}. Name the "
        f"{role} column with {role}_column=...",
        argument=f"{role}_column",
    )


def _table_rows(text: str, name: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """``(first line number, fields)`` of each row that is not blank."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    start = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise _error(
                name,
                start,
                f"not a valid table row ({error}). A field that begins with a quote must end "
                'with one, and a quote inside it is doubled: "a ""quoted"" word"',
            ) from None
        if any(cell.strip() for cell in cells):
            yield start, cells
        start = reader.line_num + 1


def _read_jsonl(text: str, name: str, columns: tuple[str, str]) -> Iterator[_Example]:
    for number, line in _lines(text):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise _error(
                name, number, f"not valid JSON ({error.msg} at column {error.colno})"
            ) from None
        if not isinstance(record, dict):
            raise _error(
                name,
                number,
                f"a JSON {type(record).__name__.replace('dict', 'object')} where an object "
                '{"text": ..., "label": ...} is expected',
            )
        values = []
        for key, role in zip(columns, ("text", "label"), strict=True):
            if key not in record:
                keys = ", ".join(repr(k) for k in record) or "none"
                raise _error(
                    name,
                    number,
                    f"no key {key!r} for the {role} (the keys are {keys}). Name the {role} key "
                    f"with {role}_column=...",
                    argument=f"{role}_column",
                )
            values.append(record[key])
        text, label = values
        if not isinstance(text, str):
            raise _error(name, number, f"the text ({columns[0]!r}) is not a string: {text!r}")
        if isinstance(label, int) and not isinstance(label, bool):
            label = str(label)
        if not isinstance(label, str):
            raise _error(
                name,
                number,
                f"the label ({columns[1]!r}) is neither a string nor an integer: {label!r}",
            )
        yield _example(text, label, name, number)


def _example(text: str, label: str, name: str, number: int) -> _Example:
    """One checked example: its text as it is, its label without surrounding spaces."""
    if not text.strip():
        raise _error(name, number, "empty text")
    label = label.strip()
    if not label:
        raise _error(name, number, "empty label")
    return text, label, f"{name}:{number}"


def _check_for_training(data: Labelled, name: str) -> None:
    """At least two labels, each with at least two examples."""
    counts = Counter(data.labels)
    if len(counts) < 2:
        (label,) = counts
        raise _error(
            name,
            None,
            f"every example has the label {label!r}; a classifier needs at least 2 labels",
        )
    single = [label for label in data.classes if counts[label] == 1]
    if not single:
        return
    where = {label: source for label, source in zip(data.labels, data.sources, strict=True)}
    need = "each label needs at least 2 examples (one to learn from, one to check on)"
    if len(single) == 1:
        source = where[single[0]]
        file, _, line = source.rpartition(":")
        raise LabelledDataError(
            f"{source}: the label {single[0]!r} has a single example; {need}",
            path=file,
            line=int(line),
        )
    shown = ", ".join(f"{label!r} ({where[label]})" for label in single[:5])
    more = f" and {len(single) - 5} more" if len(single) > 5 else ""
    raise _error(name, None, f"{len(single)} labels have a single example: {shown}{more}; {need}")


@attrs.frozen(eq=False)
class LabelledSplits:
    """Which examples go to training, validation and test.

    Attributes:
        train, val, test: int64 indices into the :class:`Labelled` texts, ascending; disjoint,
            and together every index once.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def stratified_split(
    labels: Sequence[str] | np.ndarray, *, val: float, test: float, seed: int
) -> LabelledSplits:
    """Split example indices into train, val and test, keeping each label's share.

    Each label's examples are shuffled (one ``numpy.random.default_rng(seed)``, the labels taken
    in sorted order), then val takes ``val * n`` of its ``n`` examples and test ``test * n``,
    rounded half up, but at least 1 each when its fraction is above 0, as long as training keeps
    at least 1 (with too few, test gives way first, then val: a label with 2 examples puts one
    in val and none in test). The same labels and seed give the same split.

    Args:
        labels: one label per example (names, or ids).
        val, test: the fractions for validation and test, each in ``[0, 1)``, together below 1.
        seed: the seed of the shuffle.

    Raises:
        LabelledDataError: a fraction is out of range, or (with ``val`` or ``test`` above 0) a
            label has a single example: the message names it and its index.
    """
    for key, fraction in (("val", val), ("test", test)):
        if not 0 <= fraction < 1:
            raise LabelledDataError(
                f"{key}={fraction!r}: a fraction must be at least 0 and below 1", argument=key
            )
    if val + test >= 1:
        raise LabelledDataError(
            f"val + test must be below 1 so that some examples are left to train on; got "
            f"val={val}, test={test}",
            argument=("val", "test"),
        )
    classes, inverse = np.unique(np.asarray(labels), return_inverse=True)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for k, label in enumerate(classes):
        members = np.flatnonzero(inverse == k)
        n = len(members)
        if n == 1 and (val > 0 or test > 0):
            raise LabelledDataError(
                f"the label {str(label)!r} has a single example (index {members[0]}); a split "
                "needs at least 2 of each label, so that training and validation both see it"
            )
        members = rng.permutation(members)
        n_val, n_test = _share(n, val), _share(n, test)
        while n_val + n_test > n - 1:  # training keeps at least one: test gives way first
            if n_test > 0:
                n_test -= 1
            else:
                n_val -= 1
        parts["val"].append(members[:n_val])
        parts["test"].append(members[n_val : n_val + n_test])
        parts["train"].append(members[n_val + n_test :])
    return LabelledSplits(
        **{
            key: np.sort(np.concatenate(arrays)).astype(np.int64) if arrays else _empty()
            for key, arrays in parts.items()
        }
    )


def _share(n: int, fraction: float) -> int:
    """``fraction * n`` rounded half up, but at least 1 when ``fraction > 0``."""
    if fraction <= 0:
        return 0
    return max(1, math.floor(n * fraction + 0.5))


def _empty() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)
