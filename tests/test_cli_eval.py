"""``charseq eval``: a run's own corpus or a given text, its units and unknown-character policy."""

from __future__ import annotations

import json

import pytest

from tests._cli import SMALL, run


def test_a_run_reads_its_corpus_again_from_any_directory(corpus, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert (
        run("train", "--data", "corpus.txt", "--out", "run", "--steps", "2", *SMALL).exit_code == 0
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run("eval", str(out))
    assert result.exit_code == 0 and result.output.startswith("test: "), result.output


def test_eval_names_what_its_tokens_are(corpus, tmp_path):
    for name, unit in (("char", "characters"), ("word", "tokens")):
        out = tmp_path / name
        args = ["--set", f"tokenizer.name={name}", *SMALL]
        train = ["train", "--data", str(corpus), "--out", str(out), "--steps", "2", *args]
        assert run(*train).exit_code == 0
        result = run("eval", str(out), "--split", "all")
        assert result.exit_code == 0 and result.output.rstrip().endswith(unit), result.output


def test_eval_of_a_given_text_takes_all_of_it_and_an_unknown_policy(corpus, tmp_path):
    out = tmp_path / "run"
    train = ["train", "--data", str(corpus), "--out", str(out), "--steps", "2", *SMALL]
    assert run(*train).exit_code == 0
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("the", "utf-8")  # too small to split, whole is fine
    result = run("eval", str(out), "--data", str(tiny), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["tokens"] == 2  # every token after the first
    tiny.write_text("t", "utf-8")
    result = run("eval", str(out), "--data", str(tiny))
    assert result.exit_code == 1 and "the text has 1 token(s): nothing to evaluate" in result.output
    odd = tmp_path / "odd.txt"
    odd.write_text("the \u00fc the", "utf-8")  # one character the corpus does not have
    result = run("eval", str(out), "--data", str(odd))
    assert result.exit_code == 1 and "--unknown" in result.output
    result = run("eval", str(out), "--data", str(odd), "--unknown", "skip", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["tokens"] == len("the  the") - 1  # the ü dropped


def test_an_unknown_policy_for_bytes_says_that_bytes_have_none(corpus, tmp_path):
    out = tmp_path / "bytes"
    args = ["--data", str(corpus), "--out", str(out), "--steps", "2", *SMALL]
    assert run("train", *args, "--set", "tokenizer.name=byte").exit_code == 0
    plain = run("eval", str(out), "--json")
    for policy in ("skip", "replace"):
        result = run("eval", str(out), "--unknown", policy, "--json")
        assert result.exit_code == 0, result.output
        assert "the byte tokenizer has no unknown characters (every text encodes" in result.output
        assert json.loads(result.output.splitlines()[-1]) == json.loads(plain.output)
        assert "has no unknown-character policy" not in result.output
    from charseq import Pipeline

    pipe = Pipeline.load(out, device="cpu")
    with pytest.warns(UserWarning, match="the byte tokenizer has no unknown characters"):
        skipped = pipe.score("h\u00e9 \U0001f600", unknown="skip")
    assert skipped.to_dict() == pipe.score("h\u00e9 \U0001f600").to_dict()
