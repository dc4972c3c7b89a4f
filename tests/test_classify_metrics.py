"""charseq.classify.metrics and .baseline: scores checked against hand-computed values and an
independent count (scikit-learn's conventions), the table and the figure, and the n-gram
baseline learning two small synthetic tasks."""

from __future__ import annotations

import json
import random
import struct
import sys
import unicodedata

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from charseq.classify.baseline import NgramBaseline, ngrams
from charseq.classify.metrics import (
    ClassificationMetrics,
    classification_metrics,
    confusion_figure,
)
from charseq.errors import CharseqError

# -- hand-computed cases --------------------------------------------------------------------


def test_three_classes_by_hand():
    # cat: 2 of 3 right, never predicted wrongly: P = 2/2, R = 2/3, F1 = 2*2/(2*2+0+1) = 0.8
    # dog: 1 of 2 right, one cat taken for a dog: P = 1/2, R = 1/2, F1 = 2/(2+1+1) = 0.5
    # bird: 1 of 1 right, one dog taken for a bird: P = 1/2, R = 1, F1 = 2/(2+1+0) = 2/3
    m = classification_metrics([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ["cat", "dog", "bird"])
    assert m.confusion.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m.confusion.dtype == np.int64
    assert m.accuracy == pytest.approx(4 / 6)
    rows = m.per_class()
    assert [row["class"] for row in rows] == ["cat", "dog", "bird"]
    assert [row["precision"] for row in rows] == pytest.approx([1.0, 0.5, 0.5])
    assert [row["recall"] for row in rows] == pytest.approx([2 / 3, 0.5, 1.0])
    assert [row["f1"] for row in rows] == pytest.approx([0.8, 0.5, 2 / 3])
    assert [row["support"] for row in rows] == [3, 2, 1]
    assert m.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_a_class_never_predicted_has_precision_zero():
    # "c" is never predicted: precision 0 (not NaN), recall 0, F1 0, and it counts in macro-F1.
    m = classification_metrics([0, 1, 2, 2], [0, 1, 1, 1], ["a", "b", "c"])
    c = m.per_class()[2]
    assert (c["precision"], c["recall"], c["f1"], c["support"]) == (0.0, 0.0, 0.0, 2)
    assert m.per_class()[1]["f1"] == pytest.approx(0.5)  # P = 1/3, R = 1
    assert m.macro_f1 == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert not any(np.isnan(v) for row in m.per_class() for v in row.values() if v != row["class"])


def test_a_class_only_predicted_counts_as_zero():
    # "c" has no true text but is predicted once: F1 0, and macro-F1 counts it (as sklearn does).
    m = classification_metrics([0, 0, 1], [0, 2, 1], ["a", "b", "c"])
    assert m.per_class()[2] == {
        "class": "c",
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 0,
    }
    assert m.macro_f1 == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)


def test_a_class_in_neither_list_is_left_out_of_macro_f1():
    m = classification_metrics([0, 1], [0, 1], ["a", "b", "c"])
    assert m.scored.tolist() == [True, True, False]
    assert m.macro_f1 == 1.0 and m.accuracy == 1.0
    assert m.confusion.shape == (3, 3)  # c keeps its row and column
    assert "macro-F1 leaves out c" in m.table()


def test_a_single_class():
    m = classification_metrics([0, 0, 0], [0, 0, 0], ["only"])
    assert m.confusion.tolist() == [[3]]
    assert (m.accuracy, m.macro_f1) == (1.0, 1.0)
    assert m.per_class() == [
        {"class": "only", "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 3}
    ]


def test_to_dict_is_plain_json():
    m = classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), ("x", "y"))
    data = json.loads(json.dumps(m.to_dict()))
    assert data["classes"] == ["x", "y"]
    assert data["confusion"] == [[1, 0], [1, 1]]
    assert data["accuracy"] == pytest.approx(2 / 3)
    assert data["macro_f1"] == pytest.approx(m.macro_f1)
    assert [row["class"] for row in data["per_class"]] == ["x", "y"]


def test_metrics_are_frozen():
    m = classification_metrics([0, 1], [0, 1], ["a", "b"])
    with pytest.raises(ValueError):
        m.confusion[0, 0] = 5
    with pytest.raises(AttributeError):
        m.classes = ("c", "d")


@pytest.mark.parametrize(
    ("true", "predicted", "classes", "message"),
    [
        ([], [], ["a"], "true=... is empty"),
        ([0, 1], [0], ["a", "b"], "true=... has 2 labels but predicted=... has 1"),
        ([0, 2], [0, 1], ["a", "b"], "true=... holds class 2, outside range(2)"),
        ([0, 1], [0, -1], ["a", "b"], "predicted=... holds class -1"),
        ([0.0, 1.0], [0, 1], ["a", "b"], "float64 values, not class indices"),
        ([0], [0], [], "classes=... is empty"),
        ([0], [0], ["a", "a"], "names 'a' more than once"),
    ],
)
def test_bad_input_gets_a_clear_error(true, predicted, classes, message):
    with pytest.raises(CharseqError, match=message.replace("(", r"\(").replace(")", r"\)")):
        classification_metrics(true, predicted, classes)


def test_a_confusion_of_the_wrong_shape_is_refused():
    with pytest.raises(CharseqError, match=r"2 classes need \(2, 2\)"):
        ClassificationMetrics(("a", "b"), np.ones((3, 3)))


# -- properties, against an independent count -----------------------------------------------


@st.composite
def labelled(draw):
    """(true, predicted, classes): up to 5 classes, up to 30 texts."""
    size = draw(st.integers(1, 5))
    n = draw(st.integers(1, 30))
    index = st.integers(0, size - 1)
    true = draw(st.lists(index, min_size=n, max_size=n))
    predicted = draw(st.lists(index, min_size=n, max_size=n))
    return true, predicted, [f"class{i}" for i in range(size)]


def sklearn_macro_f1(true, predicted):
    """``f1_score(true, predicted, average="macro", zero_division=0)`` counted by hand: over
    the labels in either list, F1 = 2 tp / (2 tp + fp + fn), 0 where that is 0/0."""
    scores = []
    for label in sorted(set(true) | set(predicted)):
        pairs = list(zip(true, predicted, strict=True))
        tp = sum(t == label and p == label for t, p in pairs)
        fp = sum(t != label and p == label for t, p in pairs)
        fn = sum(t == label and p != label for t, p in pairs)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(scores) / len(scores)


@given(labelled())
def test_scores_follow_from_the_counts(case):
    true, predicted, classes = case
    m = classification_metrics(true, predicted, classes)
    assert m.total == len(true)
    assert m.accuracy == pytest.approx(np.trace(m.confusion) / m.confusion.sum())
    assert m.accuracy == pytest.approx(np.mean(np.array(true) == np.array(predicted)))
    assert 0.0 <= m.macro_f1 <= 1.0
    assert m.macro_f1 == pytest.approx(sklearn_macro_f1(true, predicted))
    assert [row["support"] for row in m.per_class()] == [true.count(i) for i in range(len(classes))]
    for row in m.per_class():
        assert all(0.0 <= row[key] <= 1.0 for key in ("precision", "recall", "f1"))


@given(labelled())
def test_perfect_predictions_score_one(case):
    true, _, classes = case
    m = classification_metrics(true, true, classes)
    assert m.accuracy == 1.0 and m.macro_f1 == 1.0
    assert (m.confusion == np.diag(np.diag(m.confusion))).all()


# -- the table -------------------------------------------------------------------------------


def columns(text):
    """How many terminal columns ``text`` takes (wide characters two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def test_table_names_every_class_and_shows_the_numbers():
    m = classification_metrics([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ["cat", "dog", "bird"])
    table = m.table()
    print(table)
    for name in ("cat", "dog", "bird", "accuracy", "macro-F1", "precision", "recall", "F1"):
        assert name in table
    assert "0.667" in table  # accuracy, cat's recall, bird's F1
    assert f"{m.macro_f1:.3f}" in table  # 0.656
    lines = table.splitlines()
    assert lines[1].split() == ["cat", "1.000", "0.667", "0.800", "3"]
    assert lines[-3].split() == ["cat", "2", "1", "0"]  # the confusion matrix's first row
    assert lines[-1].split() == ["bird", "0", "0", "1"]


def test_table_cuts_long_names_and_aligns_wide_characters():
    classes = ["short", "a class name far too long for any column", "日本語の名前"]
    m = classification_metrics([0, 1, 2, 2], [0, 1, 2, 0], classes)
    table = m.table()
    assert "a class name far to…" in table  # cut to 20 columns
    assert "far too long for any column" not in table
    matrix = table.split("\n\n")[-1].splitlines()  # heading and a row per class
    assert len({columns(line) for line in matrix}) == 1, table  # all end in the same column
    scores = table.splitlines()[: len(classes) + 1]
    assert len({columns(line) for line in scores}) == 1, table


def test_table_cuts_column_headings_only_as_far_as_needed():
    few = classification_metrics([0, 1], [0, 1], ["Vietnamese", "Portuguese"]).table()
    assert few.splitlines()[-3].split()[-2:] == ["Vietnamese", "Portuguese"]  # whole: they fit
    classes = [f"language{i}" for i in range(18)]
    many = classification_metrics(list(range(18)), list(range(18)), classes).table()
    heading = many.splitlines()[-19]
    assert heading.split()[-18:] == ["langu…"] * 18  # cut to 6 columns, no further
    assert len({columns(line) for line in many.splitlines()[-19:]}) == 1


# -- the figure ------------------------------------------------------------------------------


def test_confusion_figure_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason='the figure needs matplotlib: pip install ".[plot]"')
    m = classification_metrics([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], ["ab", "cd", "ef"])
    path = confusion_figure(m, tmp_path / "confusion.png", title="three classes")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 300 and height > 300
    counts = confusion_figure(m, tmp_path / "counts.svg", normalize=False)
    assert counts.read_text("utf-8").lstrip().startswith("<?xml")


def test_confusion_figure_refuses_other_formats(tmp_path):
    m = classification_metrics([0], [0], ["a"])
    with pytest.raises(CharseqError, match=r"\.png or \.svg, not \.jpg"):
        confusion_figure(m, tmp_path / "confusion.jpg")


def test_confusion_figure_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    m = classification_metrics([0], [0], ["a"])
    with pytest.raises(CharseqError, match=r'needs matplotlib.*"charseq\[plot\]"'):
        confusion_figure(m, tmp_path / "confusion.png")


# -- the n-gram baseline ---------------------------------------------------------------------


def two_alphabets(seed, n):
    """Texts over "ab" (class 0) or "cd" (class 1), each character swapped for any of "abcd"
    three times in ten."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        own = "ab" if i % 2 == 0 else "cd"
        length = rng.randint(3, 12)
        chars = [rng.choice("abcd" if rng.random() < 0.3 else own) for _ in range(length)]
        texts.append("".join(chars))
        labels.append(i % 2)
    return texts, labels


def surnames(seed, n):
    """Made-up surnames from shared stems, ending in -son (class 0) or -ov (class 1)."""
    rng = random.Random(seed)
    stems = ["ivan", "pet", "smir", "john", "ander", "kuz", "nil", "mar", "ol", "dav", "rob"]
    texts, labels = [], []
    for i in range(n):
        stem = rng.choice(stems) + "".join(
            rng.choice("aeilnorst") for _ in range(rng.randint(0, 3))
        )
        texts.append(stem.capitalize() + ("son" if i % 2 == 0 else "ov"))
        labels.append(i % 2)
    return texts, labels


def test_ngrams_mark_the_ends():
    assert ngrams("ab", (1, 2)) == {
        "\x02": 1,
        "a": 1,
        "b": 1,
        "\x03": 1,
        "\x02a": 1,
        "ab": 1,
        "b\x03": 1,
    }


@pytest.mark.parametrize("task", [two_alphabets, surnames])
def test_baseline_learns_a_synthetic_task(task):
    texts, labels = task(0, 600)
    test_texts, test_labels = task(1, 300)
    baseline = NgramBaseline().fit(texts, labels, num_classes=2)
    predicted = baseline.predict(test_texts)
    assert predicted.dtype == np.int64 and predicted.shape == (300,)
    accuracy = classification_metrics(test_labels, predicted, ["0", "1"]).accuracy
    assert accuracy >= 0.9, accuracy


def test_baseline_is_deterministic_and_gives_probabilities():
    texts, labels = two_alphabets(0, 200)
    first = NgramBaseline(seed=3).fit(texts, labels, num_classes=3)
    second = NgramBaseline(seed=3).fit(texts, labels, num_classes=3)
    probabilities = first.predict_proba(texts[:50])
    assert probabilities.shape == (50, 3)  # class 2 has no text, but has its column
    assert np.array_equal(probabilities, second.predict_proba(texts[:50]))
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert (probabilities[:, 2] < 0.5).all()
    assert first.predict_proba([]).shape == (0, 3)


def test_baseline_keeps_the_most_frequent_ngrams():
    baseline = NgramBaseline(n=(1,), max_features=2).fit(["aab", "ac"], [0, 1], num_classes=2)
    assert list(baseline.vocabulary) == ["a", "\x02"]  # a: 3, then the markers tie at 2: by name
    assert baseline.weight.shape == (2, 2)


@pytest.mark.parametrize(
    ("texts", "labels", "message"),
    [
        ([], [], "texts=... is empty"),
        (["ab", "cd"], [0], "labels=... has 1 labels for 2 texts"),
        (["ab", "cd"], [0, 2], r"holds class 2, outside range\(2\)"),
        (["ab", "cd"], [0.0, 1.0], "not class indices"),
        ("abcd", [0, 1, 0, 1], "is one string: pass a list"),
        (["ab", None], [0, 1], r"texts\[1\] is a NoneType, not a string"),
    ],
)
def test_baseline_bad_input_gets_a_clear_error(texts, labels, message):
    with pytest.raises(CharseqError, match=message):
        NgramBaseline().fit(texts, labels, num_classes=2)


def test_baseline_must_be_fitted_before_predicting():
    with pytest.raises(CharseqError, match="not fitted yet"):
        NgramBaseline().predict(["ab"])
    with pytest.raises(CharseqError, match="n-gram sizes must be 1 or more"):
        NgramBaseline(n=(0, 2))
