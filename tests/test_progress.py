"""Progress in the slow phases that are not training steps (issue 14): reading and encoding a
large corpus, and evaluating a large split, show bars on standard error where a bar is wanted
(the training bar is shown, or standard error is a terminal), and nothing anywhere else.

The thresholds are lowered here (``progress_min_bytes``, ``eval_min_tokens`` or the module
constants), so small corpora stand in for large ones.
"""

from __future__ import annotations

import io
from contextlib import contextmanager

import pytest
from click.testing import CliRunner

import charseq.corpus.encoded
import charseq.evaluate
from charseq import Callback, Pipeline
from charseq.builtins.tokenizers import CharTokenizer
from charseq.callbacks import ProgressBar
from charseq.cli import cli
from charseq.corpus import prepare_corpus
from charseq.evaluate import evaluate_checkpoint
from charseq.progress import CORPUS_PROGRESS_BYTES, wanted

TEXT = "the owl and the pussycat went to sea in a beautiful pea-green boat. " * 40
SPEC = {
    "cell": {"name": "gru", "hidden_size": 8, "num_layers": 1},
    "train": {"steps": 3, "batch_size": 2, "seq_len": 16},
}


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "owl.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


class Terminal(io.StringIO):
    """A standard error that says it is a terminal."""

    def isatty(self) -> bool:
        return True


# -- the corpus ----------------------------------------------------------------------------------


def test_a_corpus_above_the_threshold_shows_its_passes(corpus, tmp_path, capsys):
    prepare_corpus([corpus], CharTokenizer(), tmp_path / "a", progress=True, progress_min_bytes=1)
    err = capsys.readouterr().err
    assert "fitting the tokenizer" in err and "encoding the corpus" in err
    fitted = CharTokenizer()
    fitted.fit(TEXT)
    prepare_corpus([corpus], fitted, tmp_path / "b", progress=True, progress_min_bytes=1)
    err = capsys.readouterr().err
    assert "reading the corpus" in err and "encoding the corpus" in err


def test_each_pass_reports_every_byte_of_the_corpus(corpus, tmp_path, monkeypatch):
    seen: dict[str, list] = {}

    @contextmanager
    def recording(desc, total, *, unit, show, minimum, file=None):
        seen[desc] = [total, 0, show, minimum]

        def advance(amount: int) -> None:
            seen[desc][1] += amount

        yield advance

    monkeypatch.setattr(charseq.corpus.encoded, "phase", recording)
    prepare_corpus([corpus], CharTokenizer(), tmp_path, chunk_chars=64, progress=True)
    size = corpus.stat().st_size
    assert seen == {
        "fitting the tokenizer": [size, size, True, CORPUS_PROGRESS_BYTES],
        "encoding the corpus": [size, size, True, CORPUS_PROGRESS_BYTES],
    }


@pytest.mark.parametrize(
    ("progress", "minimum"),
    [
        (True, None),  # a small corpus: the default threshold
        (False, 1),  # asked for silence
        (None, 1),  # standard error is not a terminal (pytest's capture)
    ],
)
def test_a_corpus_stays_silent_where_no_bar_is_wanted(corpus, tmp_path, capsys, progress, minimum):
    prepare_corpus(
        [corpus], CharTokenizer(), tmp_path, progress=progress, progress_min_bytes=minimum
    )
    assert capsys.readouterr().err == ""


def test_on_a_terminal_the_default_shows_a_bar(corpus, tmp_path, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert wanted(None) and not wanted(None, io.StringIO()) and not wanted(False, terminal)
    prepare_corpus([corpus], CharTokenizer(), tmp_path, progress=None, progress_min_bytes=1)
    assert "encoding the corpus" in terminal.getvalue()


# -- training: the corpus and the evaluations ----------------------------------------------------


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def on_eval_progress(self, trainer, split, done, total):
        self.calls.append((split, done, total))


def test_callbacks_follow_each_evaluation_to_its_end(corpus):
    recorder = Recorder()
    Pipeline.from_spec(SPEC, device="cpu").fit(files=corpus, callbacks=[recorder])
    assert recorder.calls, "the final evaluation reported no progress"
    total = recorder.calls[0][2]
    assert recorder.calls[0] == ("val", 0, total) and recorder.calls[-1] == ("val", total, total)
    done = [d for _, d, _ in recorder.calls]
    assert done == sorted(set(done)) and len(done) > 2  # each batch, in order, once


def test_the_progress_bar_shows_encoding_and_evaluation(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(charseq.corpus.encoded, "CORPUS_PROGRESS_BYTES", 1)
    bar = ProgressBar(eval_min_tokens=1)
    Pipeline.from_spec(SPEC, device="cpu").fit(files=corpus, out=tmp_path / "run", callbacks=[bar])
    err = capsys.readouterr().err
    assert "fitting the tokenizer" in err and "encoding the corpus" in err
    assert "evaluating val" in err
    assert bar.eval_bar is None  # closed when the evaluation ended


def test_training_without_a_bar_or_below_the_thresholds_stays_silent(corpus, monkeypatch, capsys):
    Pipeline.from_spec(SPEC, device="cpu").fit(files=corpus, callbacks=[ProgressBar()])
    err = capsys.readouterr().err
    assert "corpus" not in err and "evaluating" not in err and "3/3" in err  # the training bar
    monkeypatch.setattr(charseq.corpus.encoded, "CORPUS_PROGRESS_BYTES", 1)
    Pipeline.from_spec(SPEC, device="cpu").fit(files=corpus)  # no bar: the loop never prints
    assert capsys.readouterr().err == ""


def test_charseq_train_shows_the_corpus_bar_unless_no_progress(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(charseq.corpus.encoded, "CORPUS_PROGRESS_BYTES", 1)
    args = ["train", "--data", str(corpus), "--steps", "2", "--set", "cell.hidden_size=8"]
    shown = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "a")])
    assert shown.exit_code == 0, shown.output
    assert "encoding the corpus" in shown.stderr
    size = corpus.stat().st_size
    assert f"corpus: 1 file, {size / 1e3:.1f} kB" in shown.stderr  # what it trains on, first
    quiet = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "b"), "--no-progress"])
    assert quiet.exit_code == 0, quiet.output
    assert "corpus" not in quiet.stderr and "%" not in quiet.stderr


# -- evaluating a checkpoint ---------------------------------------------------------------------


def test_evaluating_a_checkpoint_shows_progress_where_wanted(corpus, tmp_path, monkeypatch, capsys):
    Pipeline.from_spec(SPEC, device="cpu").fit(files=corpus, out=tmp_path / "run")
    monkeypatch.setattr(charseq.evaluate, "EVAL_PROGRESS_TOKENS", 1)
    monkeypatch.setattr(charseq.corpus.encoded, "CORPUS_PROGRESS_BYTES", 1)
    capsys.readouterr()
    quiet = evaluate_checkpoint(tmp_path / "run", device="cpu")  # not a terminal: no bars
    assert capsys.readouterr().err == ""
    shown = evaluate_checkpoint(tmp_path / "run", device="cpu", progress=True)
    err = capsys.readouterr().err
    assert "evaluating test" in err and "reading the corpus" not in err  # from the run's cache
    assert shown == quiet
    given = evaluate_checkpoint(tmp_path / "run", files=[corpus], device="cpu", progress=True)
    err = capsys.readouterr().err
    assert "evaluating test" in err and "reading the corpus" in err
    assert given["bpc"] == quiet["bpc"]  # the same text, read from the file this time
