"""The library's errors name Python arguments (``files=...``, ``unknown='skip'``); the same
errors on the command line name its flags (``--data PATH``, ``--unknown skip``)."""

from __future__ import annotations

import shutil

import pytest

from charseq import Pipeline
from charseq.checkpoint import CheckpointError
from charseq.corpus import CorpusDecodeError, iter_text
from charseq.errors import UnknownCharacterError
from charseq.evaluate import evaluate_checkpoint
from tests._cli import SMALL, assert_error_line, run


@pytest.fixture
def trained(corpus, tmp_path):
    out = tmp_path / "run"
    assert (
        run("train", "--data", str(corpus), "--out", str(out), "--steps", "2", *SMALL).exit_code
        == 0
    )
    return out


def test_files_in_python_is_data_on_the_command_line(trained, corpus):
    shutil.rmtree(trained / "cache")  # the corpus must be given: which files, and how
    with pytest.raises(CheckpointError) as caught:
        evaluate_checkpoint(trained, device="cpu")
    message = str(caught.value)
    assert f"pass the data yourself: files={[str(corpus)]!r}, with split='test'" in message
    assert "--" not in message and set(caught.value.argument) == {"files", "split"}
    result = run("eval", str(trained), "--device", "cpu")
    assert_error_line(result, f"pass the data yourself: --data {corpus}, with --split test")
    assert "files=" not in result.output and "split=" not in result.output


def test_unknown_in_python_is_unknown_on_the_command_line(trained, tmp_path):
    odd = tmp_path / "odd.txt"
    odd.write_text("the \u00fc the", "utf-8")
    with pytest.raises(UnknownCharacterError) as caught:
        evaluate_checkpoint(trained, files=[odd], device="cpu")
    assert str(caught.value).endswith("When evaluating: unknown='skip' or unknown='replace'.")
    assert caught.value.argument == "unknown"
    result = run("eval", str(trained), "--data", str(odd), "--device", "cpu")
    assert_error_line(result, "When evaluating: --unknown skip or --unknown replace.")
    assert " unknown=" not in result.output  # (the tokenizer's option reads tokenizer.unknown=)
    pipe = Pipeline.load(trained, device="cpu")
    with pytest.raises(UnknownCharacterError, match="For this text alone: unknown='skip'"):
        pipe.generate("the \u00fc", 3)
    result = run(
        "sample", str(trained), "--prime", "the \u00fc", "--length", "3", "--device", "cpu"
    )
    assert_error_line(
        result, "For this text alone: --unknown skip (drop them) or --unknown replace."
    )


def test_out_overwrite_and_resume_in_python_are_flags_on_the_command_line(trained, corpus):
    with pytest.raises(CheckpointError) as caught:
        Pipeline.from_spec({"cell": {"hidden_size": 8}}).fit(files=[corpus], out=trained, steps=1)
    assert str(caught.value) == (
        f"out={str(trained)!r} already holds a run; continue it with "
        f"Pipeline.resume({str(trained)!r}), replace it with overwrite=True, or choose another "
        "out=..."
    )
    result = run("train", "--data", str(corpus), "--out", str(trained), "--steps", "1", *SMALL)
    assert_error_line(
        result,
        f"--out {trained} already holds a run; continue it with --resume {trained}, replace it "
        "with --overwrite, or choose another --out DIRECTORY",
    )


def test_encoding_in_python_is_encoding_on_the_command_line(tmp_path):
    latin = tmp_path / "latin.txt"
    latin.write_bytes("ok then caf\u00e9".encode("latin-1"))
    with pytest.raises(CorpusDecodeError, match="encoding='latin-1' or encoding='cp1252'"):
        list(iter_text([latin]))
    result = run("train", "--data", str(latin), "--out", str(tmp_path / "r"), *SMALL)
    assert_error_line(result, "(e.g. --encoding latin-1 or --encoding cp1252)")
