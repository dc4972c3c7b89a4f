"""A classifier from the command line: ``charseq train --task classify``, ``charseq predict``,
``charseq eval`` with its table, JSON and confusion figure, ``--resume``, and the errors that
name the task."""

from __future__ import annotations

import json
import random

import pytest

from tests._cli import SMALL, assert_error_line, run

CLASSIFY = [
    "--task", "classify", "--no-progress", "--set", "cell.hidden_size=24",
    "--set", "cell.num_layers=1", "--set", "train.batch_size=32", "--set", "optimizer.lr=0.02",
    "--set", "train.eval_every=40", "--set", "train.test_fraction=0.1",
]  # fmt: skip


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A TSV of bracket strings: does the text hold more '(' than ')'?"""
    rng = random.Random(0)
    rows = ["text\tlabel"]
    for _ in range(300):
        text = "".join(rng.choice("()x") for _ in range(rng.randint(4, 14)))
        rows.append(f"{text}\t{'open' if text.count('(') > text.count(')') else 'closed'}")
    path = tmp_path_factory.mktemp("labelled") / "brackets.tsv"
    path.write_text("\n".join(rows) + "\n", "utf-8")
    return path


@pytest.fixture(scope="module")
def classifier(labelled, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "classifier"
    result = run("train", *CLASSIFY, "--data", str(labelled), "--steps", "120", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "best val macro f1" in result.output
    return out


def test_predict_prints_labels_and_probabilities(classifier, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("((((x\n\n))x)\n", "utf-8")
    result = run("predict", str(classifier), str(texts), "--top", "2")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["open", "closed"]
    assert all(len(line.split("\t")) == 5 for line in lines)  # 2 labels, 2 probabilities, text
    as_json = run("predict", str(classifier), str(texts), "--json")
    first = json.loads(as_json.output.splitlines()[0])
    assert first["text"] == "((((x" and first["top"][0]["label"] == "open"


def test_eval_prints_the_metrics_the_confusion_matrix_and_json(classifier, labelled, tmp_path):
    result = run("eval", str(classifier), "--data", str(labelled), "--split", "test")
    assert result.exit_code == 0, result.output
    assert "macro-F1" in result.output and "true \\ predicted" in result.output
    figure = tmp_path / "confusion.png"
    as_json = run(
        "eval", str(classifier), "--data", str(labelled), "--json", "--confusion", str(figure)
    )
    scores = json.loads(as_json.output)
    assert scores["accuracy"] >= 0.85 and sum(map(sum, scores["confusion"])) == 300
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_takes_the_labelled_data_again(classifier, labelled):
    result = run("train", "--resume", str(classifier), "--data", str(labelled), "--steps", "130",
                 "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "stopped at step 130" in result.output
    assert_error_line(
        run("train", "--resume", str(classifier), "--steps", "140"),
        "is a classifier's run: give --data, the labelled file it was trained on",
    )
    assert_error_line(
        run("train", "--resume", str(classifier), "--task", "classify"),
        "--resume continues a run as it was: drop --spec/--preset/--set/--task",
    )


def test_each_command_names_the_task_it_needs(classifier, labelled, corpus, tmp_path):
    assert_error_line(run("sample", str(classifier)), "this pipeline is a classifier")
    assert_error_line(run("eval", str(classifier)), "a classifier is evaluated on labelled texts")
    lm = tmp_path / "lm"
    made = run("train", "--data", str(corpus), *SMALL, "--steps", "2", "--out", str(lm))
    assert made.exit_code == 0, made.output
    texts = tmp_path / "t.txt"
    texts.write_text("the\n", "utf-8")
    assert_error_line(run("predict", str(lm), str(texts)), "is a language model (task 'lm')")
    assert_error_line(
        run("train", *CLASSIFY, "--out", str(tmp_path / "x")),
        "a classifier trains on one labelled file or directory",
    )
    assert_error_line(
        run(
            "train",
            *CLASSIFY,
            "--data",
            str(labelled),
            "--sample-every",
            "5",
            "--out",
            str(tmp_path / "y"),
        ),  # fmt: skip
        "--sample-every samples a language model",
    )
    single = tmp_path / "single.tsv"
    single.write_text("text\tlabel\nab\tx\nba\ty\naa\tx\n", "utf-8")
    assert_error_line(
        run("train", *CLASSIFY, "--data", str(single), "--out", str(tmp_path / "z")),
        "single.tsv",
    )


def test_init_from_starts_a_classifier_from_a_language_model(labelled, tmp_path):
    lines = [line.split("\t")[0] for line in labelled.read_text("utf-8").splitlines()[1:]]
    text = tmp_path / "lm.txt"
    text.write_text("\n".join(lines) + "\n", "utf-8")
    lm = tmp_path / "lm"
    made = run("train", "--data", str(text), *SMALL, "--steps", "3", "--out", str(lm))
    assert made.exit_code == 0, made.output
    frozen = ["--set", "task.freeze_cells=true", "--steps", "3", "--out", str(tmp_path / "c")]
    result = run("train", *CLASSIFY, "--data", str(labelled), "--init-from", str(lm), *frozen)
    assert result.exit_code == 0, result.output
    assert_error_line(
        run(
            "train",
            "--data",
            str(text),
            *SMALL,
            "--init-from",
            str(lm),
            "--out",
            str(tmp_path / "d"),
        ),
        "--init-from starts a classifier: add --task classify",
    )
