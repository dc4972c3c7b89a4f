"""Labelled data (charseq.classify.data): the three layouts, header detection, every bad input
with the file and line it names, and the stratified split's properties."""

from __future__ import annotations

import csv
import io
import json
import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from charseq.classify.data import (
    Labelled,
    LabelledDataError,
    LabelledSplits,
    read_labelled,
    stratified_split,
)
from charseq.errors import CharseqError

ROWS = [("Abe", "en"), ("Bob, Jr.", "en"), ('Zoë "Z"', "fr"), ("Amélie", "fr")]


def write(path, content: str | bytes):
    """Write ``content`` (UTF-8 for a string) to ``path``, making its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def raises(path, line: int | None, message: str):
    """``pytest.raises`` for a LabelledDataError that begins with ``path`` (and ``:line``)."""
    where = re.escape(str(path) + (f":{line}" if line is not None else "") + ": ")
    return pytest.raises(LabelledDataError, match=f"^{where}.*{message}")


# -- the layouts --------------------------------------------------------------------------------


def test_csv_with_header_quotes_and_other_columns(tmp_path):
    path = write(
        tmp_path / "names.csv",
        'id,Text, Label \n1,Abe,en\n2,"Bob, Jr.",en\n\n3,"Zoë ""Z""",fr\n4,Amélie, fr \n',
    )
    data = read_labelled(path)
    assert list(zip(data.texts, data.labels, strict=True)) == ROWS
    assert data.sources == (f"{path}:2", f"{path}:3", f"{path}:5", f"{path}:6")
    assert data.classes == ("en", "fr")
    assert data.label_ids().tolist() == [0, 0, 1, 1]
    assert data.label_ids().dtype == np.int64
    assert len(data) == 4


def test_tsv_without_header_is_text_then_label(tmp_path):
    path = write(tmp_path / "names.tsv", "".join(f"{t}\t{lab}\r\n" for t, lab in ROWS[:2]))
    path = write(path, path.read_text("utf-8") + '"a\ttab"\tfr\n  spaced  \tfr\n')
    data = read_labelled(path)
    assert data.texts == ("Abe", "Bob, Jr.", "a\ttab", "  spaced  ")
    assert data.labels == ("en", "en", "fr", "fr")
    assert data.sources[-1] == f"{path}:4"


def test_a_quoted_text_over_several_lines_is_sourced_at_its_first(tmp_path):
    path = write(tmp_path / "a.csv", 'text,label\n"two\r\nlines",en\nAbe,en\nBo,fr\nZo,fr\n')
    data = read_labelled(path)
    assert data.texts[:2] == ("two\r\nlines", "Abe")
    assert data.sources[:3] == (f"{path}:2", f"{path}:4", f"{path}:5")


def test_header_detected_both_ways(tmp_path):
    header = read_labelled(
        write(tmp_path / "a.tsv", "label\ttext\nen\tAbe\nen\tBo\nfr\tAmé\nfr\tZo\n")
    )
    assert header.texts == ("Abe", "Bo", "Amé", "Zo")
    plain = read_labelled(write(tmp_path / "b.tsv", "Abe\ten\nBo\ten\nAmé\tfr\nZo\tfr\n"))
    assert plain.texts == header.texts and plain.labels == header.labels


def test_named_columns(tmp_path):
    table = "name,lang\nAbe,en\nBo,en\nAmé,fr\nZo,fr\n"
    path = write(tmp_path / "a.csv", table)
    data = read_labelled(path, text_column="name", label_column="LANG")
    assert data.texts == ("Abe", "Bo", "Amé", "Zo") and data.classes == ("en", "fr")
    # one named, the other keeps its default name
    path = write(tmp_path / "b.csv", "name,label\nAbe,en\nBo,en\nAmé,fr\nZo,fr\n")
    assert read_labelled(path, text_column="name").labels == data.labels


def test_jsonl(tmp_path):
    lines = [json.dumps({"text": t, "label": lab, "id": i}) for i, (t, lab) in enumerate(ROWS)]
    path = write(tmp_path / "a.jsonl", "\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]))
    data = read_labelled(path)
    assert list(zip(data.texts, data.labels, strict=True)) == ROWS
    assert data.sources[2] == f"{path}:4"
    keyed = "".join(json.dumps({"s": t, "y": i % 2}) + "\n" for i, (t, _) in enumerate(ROWS))
    path = write(tmp_path / "b.jsonl", keyed)
    data = read_labelled(path, text_column="s", label_column="y")
    assert data.labels == ("0", "1", "0", "1")


def test_directory_of_label_files(tmp_path):
    names = tmp_path / "names"
    write(names / "English.txt", "Abe\r\n\n Smith \n")
    write(names / "French.txt", "\ufeffAmélie\nZoë\u2028Z\n")
    write(names / "README.md", "ignored")
    data = read_labelled(names)
    assert data.texts == ("Abe", " Smith ", "Amélie", "Zoë\u2028Z")
    assert data.labels == ("English", "English", "French", "French")
    assert data.sources[1] == f"{names / 'English.txt'}:3"


TEXTS = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12).filter(str.strip)


@given(st.lists(TEXTS, min_size=2, max_size=6), st.sampled_from([".csv", ".tsv", ".jsonl"]))
def test_any_text_comes_back_as_written(tmp_path_factory, texts, suffix):
    """Texts with quotes, delimiters, line breaks or spaces round-trip through each format."""
    labels = ["a", "b"] * len(texts)
    texts = texts * 2
    if suffix == ".jsonl":
        content = "".join(
            json.dumps({"label": y, "text": t}, ensure_ascii=False) + "\n"
            for t, y in zip(texts, labels, strict=True)
        )
    else:
        out = io.StringIO()
        writer = csv.writer(out, delimiter="," if suffix == ".csv" else "\t")
        writer.writerows([("text", "label"), *zip(texts, labels, strict=True)])
        content = out.getvalue()
    path = write(tmp_path_factory.mktemp("rt") / f"data{suffix}", content)
    data = read_labelled(path)
    assert data.texts == tuple(texts) and data.labels == tuple(labels)


def test_other_encoding(tmp_path):
    path = write(tmp_path / "a.tsv", "Amélie\tfr\nZoë\tfr\nAbe\ten\nBo\ten\n".encode("latin-1"))
    assert read_labelled(path, encoding="latin-1").texts[0] == "Amélie"


def test_evaluation_data_may_have_one_label_and_single_examples(tmp_path):
    path = write(tmp_path / "a.tsv", "Abe\ten\n")
    assert read_labelled(path, for_training=False).labels == ("en",)


# -- bad input ----------------------------------------------------------------------------------

GOOD = "Abe\ten\nBo\ten\nAmé\tfr\nZo\tfr\n"


def test_errors_are_charseq_value_errors():
    assert issubclass(LabelledDataError, CharseqError)
    assert issubclass(LabelledDataError, ValueError)


def test_missing_path(tmp_path):
    with raises(tmp_path / "nope.tsv", None, "no such file or directory"):
        read_labelled(tmp_path / "nope.tsv")


def test_unknown_extension_lists_what_is_read(tmp_path):
    path = write(tmp_path / "a.xlsx", GOOD)
    with raises(path, None, r"cannot read '\.xlsx' files: .*\.tsv, \.csv or \.jsonl"):
        read_labelled(path)


def test_label_column_missing_names_the_columns(tmp_path):
    path = write(tmp_path / "a.csv", "text,category\nAbe,en\n")
    with raises(path, 1, "no label column 'label' .* the columns are 'text', 'category'") as info:
        read_labelled(path)
    assert info.value.path == str(path) and info.value.line == 1
    with raises(path, 1, "no label column 'lang'"):
        read_labelled(path, label_column="lang")
    jsonl = write(tmp_path / "a.jsonl", '{"text": "Abe", "label": "en"}\n{"text": "Bo"}\n')
    with raises(jsonl, 2, "no key 'label' for the label .*'text'"):
        read_labelled(jsonl)


def test_headerless_file_with_other_than_two_columns(tmp_path):
    path = write(tmp_path / "a.tsv", "Abe\ten\tx\n")
    with raises(path, 1, "3 fields and no header"):
        read_labelled(path)


def test_empty_text_and_empty_label(tmp_path):
    path = write(tmp_path / "a.tsv", GOOD + "  \tfr\n")
    with raises(path, 5, "empty text"):
        read_labelled(path)
    path = write(tmp_path / "b.csv", "text,label\nAbe,en\nBo, \n")
    with raises(path, 3, "empty label"):
        read_labelled(path)
    jsonl = write(tmp_path / "c.jsonl", '{"text": "", "label": "en"}\n')
    with raises(jsonl, 1, "empty text"):
        read_labelled(jsonl)


def test_label_with_a_single_example(tmp_path):
    path = write(tmp_path / "a.tsv", GOOD + "Hans\tde\n")
    with raises(path, 5, "the label 'de' has a single example"):
        read_labelled(path)
    path = write(tmp_path / "b.tsv", GOOD + "Hans\tde\nIvan\tru\n")
    with raises(path, None, f"2 labels have a single example: 'de' \\({path}:5\\)"):
        read_labelled(path)
    names = tmp_path / "names"
    write(names / "English.txt", "Abe\nBo\n")
    write(names / "Irish.txt", "\nSean\n")
    with raises(names / "Irish.txt", 2, "the label 'Irish' has a single example"):
        read_labelled(names)


def test_fewer_than_two_labels(tmp_path):
    path = write(tmp_path / "a.tsv", "Abe\ten\nBo\ten\n")
    with raises(path, None, "every example has the label 'en'; .* at least 2 labels"):
        read_labelled(path)
    empty = write(tmp_path / "b.csv", "text,label\n\n")
    with raises(empty, None, "holds no examples .*header is the only row"):
        read_labelled(empty)


def test_invalid_encoding_names_offset_line_and_hint(tmp_path):
    path = write(tmp_path / "a.tsv", GOOD.encode() + "Zoë\tfr\n".encode("latin-1"))
    offset = len(GOOD.encode()) + 2
    with raises(path, 5, f"not valid utf-8 text at byte offset {offset} .*encoding='latin-1'"):
        read_labelled(path)
    with raises(path, None, "unknown encoding 'nope'"):
        read_labelled(path, encoding="nope")


def test_ragged_rows(tmp_path):
    path = write(tmp_path / "a.csv", "text,label\nAbe,en\nBob, Jr.,en\n")
    with raises(path, 3, "3 fields, but the header has 2. .*comma must be quoted"):
        read_labelled(path)
    path = write(tmp_path / "b.tsv", GOOD + "a\ttab\tfr\n")
    with raises(path, 5, "3 fields, but a file without a header has 2. .*a tab"):
        read_labelled(path)
    path = write(tmp_path / "c.csv", 'text,label\n"Abe\nBo,en\n')  # a quote left open
    with raises(path, 2, "not a valid table row .*must end with one"):
        read_labelled(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text": "Abe", "label": "en"', "not valid JSON"),
        ('["Abe", "en"]', "a JSON list where an object"),
        ('{"text": 3, "label": "en"}', "the text .* is not a string"),
        ('{"text": "Abe", "label": 1.5}', "neither a string nor an integer"),
    ],
)
def test_bad_jsonl_lines(tmp_path, line, message):
    path = write(tmp_path / "a.jsonl", '{"text": "Bo", "label": "en"}\n\n' + line + "\n")
    with raises(path, 3, message):
        read_labelled(path)


def test_directory_without_txt_files(tmp_path):
    write(tmp_path / "names" / "a.csv", GOOD)
    with raises(tmp_path / "names", None, r"holds no \.txt files.*found: a\.csv"):
        read_labelled(tmp_path / "names")
    with raises(tmp_path / "names", None, r"text_column=\.\.\. and label_column=\.\.\. are for"):
        read_labelled(tmp_path / "names", text_column="x")


# -- the stratified split -----------------------------------------------------------------------


def half_up(x: float) -> int:
    return math.floor(x + 0.5)


@st.composite
def labels_and_fractions(draw):
    """Labels of 2-6 classes with 2-40 examples each, shuffled; val and test fractions."""
    counts = draw(st.lists(st.integers(2, 40), min_size=2, max_size=6))
    labels = [f"c{k}" for k, n in enumerate(counts) for _ in range(n)]
    labels = draw(st.permutations(labels))
    val = draw(st.sampled_from([0.0, 0.05, 0.1, 0.2, 1 / 3]))
    test = draw(st.sampled_from([0.0, 0.1, 0.15, 0.25]))
    return labels, val, test


@given(labels_and_fractions(), st.integers(0, 2**32 - 1))
def test_stratified_split_properties(drawn, seed):
    labels, val, test = drawn
    splits = stratified_split(labels, val=val, test=test, seed=seed)
    parts = (splits.train, splits.val, splits.test)
    assert all(part.dtype == np.int64 for part in parts)
    everything = np.concatenate(parts)
    assert sorted(everything.tolist()) == list(range(len(labels)))  # disjoint and covering
    array = np.array(labels)
    for name in sorted(set(labels)):
        n = int((array == name).sum())
        n_train, n_val, n_test = ((array[part] == name).sum() for part in parts)
        assert n_train >= 1  # every class in training
        want_val = max(1, half_up(n * val)) if val > 0 else 0
        want_test = max(1, half_up(n * test)) if test > 0 else 0
        if want_val + want_test <= n - 1:  # the rounding rule, nothing given way
            assert (n_val, n_test) == (want_val, want_test)
            assert abs(n_val - n * val) <= max(0.5, 1 - n * val)
        else:  # too few: training keeps one, test gives way first
            assert n_train == 1 and n_val == min(want_val, n - 1)
    again = stratified_split(labels, val=val, test=test, seed=seed)
    for part, same in zip(parts, (again.train, again.val, again.test), strict=True):
        assert np.array_equal(part, same)  # same seed, same split


def test_stratified_split_other_seed_other_split():
    labels = ["a"] * 100 + ["b"] * 100
    first, second = (stratified_split(labels, val=0.1, test=0.1, seed=s) for s in (0, 1))
    assert not np.array_equal(first.val, second.val)
    assert isinstance(first, LabelledSplits)


def test_stratified_split_takes_label_ids_and_small_classes():
    data = Labelled(texts=["a", "b", "c", "d"], labels=["x", "x", "y", "y"], sources=["s"] * 4)
    splits = stratified_split(data.label_ids(), val=0.1, test=0.1, seed=0)
    assert len(splits.train) == 2 and len(splits.val) == 2 and len(splits.test) == 0


def test_stratified_split_errors():
    with pytest.raises(LabelledDataError, match=r"the label 'b' has a single example \(index 2\)"):
        stratified_split(["a", "a", "b"], val=0.2, test=0.0, seed=0)
    assert len(stratified_split(["a", "a", "b"], val=0.0, test=0.0, seed=0).train) == 3
    with pytest.raises(LabelledDataError, match="val \\+ test must be below 1"):
        stratified_split(["a", "a"], val=0.5, test=0.5, seed=0)
    with pytest.raises(LabelledDataError, match="val=-0.1"):
        stratified_split(["a", "a"], val=-0.1, test=0.1, seed=0)
