"""The probe of a language model's final states (issue 20): a tiny LM trained on two kinds of
line (words; sums of numbers) holds the kind in its state after a line, in many units and in one;
the states do not depend on the batch; the probe, the unit search and ``charseq probe``."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from charseq import Pipeline
from charseq.classify.probe import (
    best_unit,
    feature_names,
    final_states,
    fit_probe,
    holdout,
    probe_texts,
)
from charseq.errors import CharseqError, UnknownCharacterError
from tests._cli import assert_error_line, run

WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "see", "his", "red"]


def lines(count: int, seed: int) -> tuple[list[str], list[str]]:
    """``count`` lines, alternately a sum (``12+7+305``) and words (``the red cat``), and their
    kinds."""
    rng = random.Random(seed)
    texts = []
    for i in range(count):
        if i % 2:
            texts.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5))))
        else:
            texts.append("+".join(str(rng.randint(0, 999)) for _ in range(rng.randint(2, 4))))
    return texts, ["sum" if i % 2 == 0 else "words" for i in range(count)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 2x16 LSTM language model's run, trained for 150 steps on 400 lines (about 2 s)."""
    texts, _ = lines(400, seed=0)
    spec = {
        "cell": {"name": "lstm", "hidden_size": 16},
        "train": {"steps": 150, "batch_size": 16, "seq_len": 32, "seed": 0, "eval_every": 150},
    }
    out = tmp_path_factory.mktemp("probe") / "run"
    Pipeline.from_spec(spec, device="cpu").fit("\n".join(texts) + "\n", out=out)
    return str(out)


@pytest.fixture(scope="module")
def lm(run_dir):
    return Pipeline.load(run_dir, device="cpu")


def test_the_kind_of_line_is_in_the_state_and_in_one_unit(lm):
    texts, kinds = lines(120, seed=1)
    report = probe_texts(lm, texts, kinds, seed=0)
    assert report.probe.held_out_accuracy >= 0.9
    assert report.probe.majority_accuracy == pytest.approx(0.5)
    assert 0 < report.probe.units_used < report.units
    assert report.unit_held_out_accuracy >= 0.8
    assert report.unit.rule == "threshold" and report.unit.below in ("sum", "words")
    assert [(c.label, c.count) for c in report.unit.classes] == [("sum", 60), ("words", 60)]
    assert report.units == 2 * 2 * 16  # 2 layers: the LSTM's h (its output) and c


def test_feature_names_are_the_inspectors_units(lm):
    names = feature_names(lm)
    assert names[:2] == ["0:h:0", "0:h:1"] and names[16:18] == ["0:c:0", "0:c:1"]
    text = "the cat sat"
    (row,) = final_states(lm, [text])
    acts = lm.activations(text)
    assert np.allclose(row, [acts.unit(name)[-1] for name in names], atol=1e-6)


TEXTS = lines(12, seed=2)[0]


@pytest.fixture(scope="module")
def alone(lm):
    """Each of TEXTS read in a batch of its own."""
    return [final_states(lm, [text])[0] for text in TEXTS]


@given(
    chosen=st.lists(st.integers(0, len(TEXTS) - 1), min_size=1, max_size=8),
    batch_size=st.integers(1, 5),
)
def test_a_texts_state_does_not_depend_on_the_others_in_its_batch(lm, alone, chosen, batch_size):
    together = final_states(lm, [TEXTS[i] for i in chosen], batch_size=batch_size)
    for row, i in zip(together, chosen, strict=True):
        assert np.allclose(row, alone[i], atol=1e-5)


def test_the_probe_is_deterministic_and_the_penalty_prunes_units():
    rng = np.random.default_rng(0)
    labels = ["a", "b"] * 50
    features = rng.normal(size=(100, 20))
    features[:, 7] += np.where(np.array(labels) == "a", -2.0, 2.0)  # one telling unit
    first, again = fit_probe(features, labels), fit_probe(features, labels)
    assert np.array_equal(first.weights, again.weights)
    assert first.held_out_accuracy >= 0.9 and 7 in first.used
    sparse = fit_probe(features, labels, l1=0.3)
    assert sparse.used.tolist() == [7]
    assert fit_probe(features, labels, l1=10.0).units_used == 0
    assert sparse.predict(features[:4]) == ["a", "b", "a", "b"]


def test_best_unit_finds_the_telling_unit_with_a_threshold_or_nearest_mean():
    labels = ["x", "y", "x", "y", "x", "y"]
    features = np.array([[0.0, 5], [0, 1], [1, 6], [1, 2], [0, 4], [1, 3]])
    found = best_unit(features, labels, ["noise", "tell"])
    assert (found.unit, found.accuracy, found.below, found.threshold) == ("tell", 1.0, "y", 3.5)
    assert found.predict(np.array([0.0, 9.0])) == ["y", "x"]
    assert [(c.label, c.count, c.mean) for c in found.classes] == [("x", 3, 5.0), ("y", 3, 2.0)]
    three = ["p", "q", "r"] * 4
    column = np.array([0.0, 5, 10] * 4) + np.tile([0.1, -0.1], 6)
    features = np.stack([np.zeros(12), column], axis=1)
    found = best_unit(features, three, ["flat", "steps"])
    assert (found.unit, found.rule, found.threshold, found.accuracy) == (
        "steps", "nearest mean", None, 1.0
    )  # fmt: skip
    assert found.predict(np.array([4.0, 11.0])) == ["q", "r"]


def test_the_held_out_split_is_stratified_and_seeded():
    labels = ["a"] * 8 + ["b"] * 4
    train, held = holdout(labels, 0.25, seed=3)
    assert sorted([*train, *held]) == list(range(12))
    assert [labels[i] for i in held].count("a") == 2 and [labels[i] for i in held].count("b") == 1
    assert np.array_equal(held, holdout(labels, 0.25, seed=3)[1])


def test_bad_inputs_get_clear_errors(lm):
    with pytest.raises(UnknownCharacterError, match=r"text 2 .*unknown='skip'"):
        final_states(lm, ["the cat", "the CAT"])
    assert final_states(lm, ["the CAT"], unknown="skip").shape == (1, 64)
    with pytest.raises(UnknownCharacterError, match=r"the text of d\.tsv:3"):
        final_states(lm, ["the cat", "the CAT"], sources=["d.tsv:2", "d.tsv:3"])
    with pytest.raises(CharseqError, match="text 1 has no tokens"):
        final_states(lm, [""])
    with pytest.raises(CharseqError, match="not one str"):
        final_states(lm, "the cat")
    features = np.zeros((4, 3))
    with pytest.raises(CharseqError, match="at least two classes"):
        fit_probe(features, ["a"] * 4)
    with pytest.raises(CharseqError, match="the label 'b' has a single example"):
        fit_probe(features, ["a", "a", "a", "b"])
    with pytest.raises(CharseqError, match="4 rows of features but 3 labels"):
        fit_probe(features, ["a", "b", "a"])
    with pytest.raises(CharseqError, match="3 features but 2 names"):
        best_unit(features, ["a", "b"] * 2, ["u", "v"])


# -- charseq probe ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    texts, kinds = lines(80, seed=4)
    path = tmp_path_factory.mktemp("data") / "lines.tsv"
    rows = [f"{text}\t{kind}" for text, kind in zip(texts, kinds, strict=True)]
    path.write_text("text\tlabel\n" + "\n".join(rows) + "\n", "utf-8")
    return path


def test_cli_prints_the_probe_against_the_majority_and_the_best_units_table(run_dir, labelled):
    result = run("probe", run_dir, "--data", str(labelled))
    assert result.exit_code == 0, result.output
    lines_ = result.output.splitlines()
    assert lines_[0].endswith("80 texts (60 to fit, 20 held out), 64 units of final state")
    assert lines_[2].split() == ["train", "held", "out"]
    assert lines_[3].startswith("probe (l1 0.01)") and lines_[4].startswith("majority class")
    assert lines_[5].startswith("best unit ")
    assert lines_[7].startswith("units the probe uses: ")
    assert lines_[-4].startswith("best unit ") and " is sum" in lines_[-4]
    assert lines_[-3].split() == ["class", "texts", "mean", "std"]
    assert lines_[-2].split()[:2] == ["sum", "40"] and lines_[-1].split()[:2] == ["words", "40"]


def test_cli_json_gives_every_field_for_scripts(run_dir, labelled):
    args = ["--data", str(labelled), "--json", "--l1", "0.05", "--seed", "1"]
    result = run("probe", run_dir, *args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert list(report) == [
        "source", "texts", "units", "classes", "train_size", "held_out_size", "probe", "best_unit"
    ]  # fmt: skip
    assert report["classes"] == ["sum", "words"] and report["texts"] == 80
    assert set(report["probe"]) == {
        "l1", "train_accuracy", "held_out_accuracy", "majority_accuracy", "units_used",
        "iterations", "top_units",
    }  # fmt: skip
    assert report["probe"]["l1"] == 0.05 and report["probe"]["held_out_accuracy"] >= 0.9
    unit = report["best_unit"]
    assert unit["rule"] == "threshold" and unit["held_out_accuracy"] >= 0.8
    assert [c["label"] for c in unit["classes"]] == ["sum", "words"]


def test_cli_errors(run_dir, labelled, tmp_path, monkeypatch):
    result = run("probe", str(tmp_path), "--data", str(labelled))
    assert_error_line(result, str(tmp_path))
    shouting = tmp_path / "shouting.tsv"
    shouting.write_text("text\tlabel\nthe cat\twords\nTHE CAT\twords\n1+2\tsum\n3+4\tsum\n")
    result = run("probe", run_dir, "--data", str(shouting))
    assert_error_line(result, "--unknown skip")
    no_label = tmp_path / "no_label.tsv"
    no_label.write_text("text\tkind\nthe cat\twords\n1+2\tsum\n")
    assert run("probe", run_dir, "--data", str(no_label)).exit_code == 1

    classifier = Pipeline.load(run_dir)
    classifier.spec = SimpleNamespace(task="classify")  # what a classifier's spec says
    monkeypatch.setattr("charseq.cli.probe.Pipeline.load", lambda *a, **k: classifier)
    result = run("probe", run_dir, "--data", str(labelled))
    assert_error_line(result, "is a 'classify' run: charseq probe reads a language model's")
