"""``charseq inspect --find``: the table, the JSON, and the errors of a text it cannot read."""

from __future__ import annotations

import json

import pytest

from charseq import Pipeline
from tests._cli import assert_error_line, run

SOURCE = 'def f(x):\n    """Say it."""\n    return g(x, [1, 2], "a b")  # done\n\n' * 12


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small trained run directory and a text for it."""
    root = tmp_path_factory.mktemp("inspect")
    spec = {
        "cell": {"name": "lstm", "hidden_size": 8, "num_layers": 2},
        "train": {"steps": 2, "batch_size": 2, "seq_len": 16, "eval_every": 2},
    }
    Pipeline.from_spec(spec, device="cpu").fit(SOURCE, out=root / "run")
    (root / "text.py").write_text(SOURCE[:400], "utf-8")
    return root


def test_find_prints_each_detectors_best_units_and_the_gates(checkpoint):
    result = run(
        "inspect", str(checkpoint / "run"), "--text", str(checkpoint / "text.py"), "--find"
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "400 characters, 400 tokens"
    header = ["detector", "unit", "correlation", "accuracy", "base", "threshold", "chance"]
    assert lines[2].split() == header
    quotes = lines.index(next(line for line in lines if line.startswith("in-quotes")))
    assert lines[quotes].split()[1].count(":") == 2  # layer:name:index
    assert not lines[quotes + 1].startswith("in-quotes")  # the next two rows: blank detector
    assert lines[quotes + 3].split()[0] != "in-quotes"
    assert any(line.startswith("line-position") and " - " in line for line in lines)  # a count
    assert "* above chance" in result.output
    gates = lines.index(next(line for line in lines if line.startswith("gate saturation")))
    assert lines[gates + 1].split() == ["layer", "gate", "left", "right"]
    assert [line.split()[:2] for line in lines[gates + 2 :]] == [
        ["0", "i"], ["0", "f"], ["0", "o"], ["1", "i"], ["1", "f"], ["1", "o"],
    ]  # fmt: skip


def test_json_gives_every_field_for_scripts(checkpoint):
    text = str(checkpoint / "text.py")
    args = ["inspect", str(checkpoint / "run"), "--text", text, "--find", "--json"]
    result = run(*args, "--top", "2", "--detector", "in-quotes", "--detector", "indent")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["characters"], report["tokens"]) == (400, 400)
    assert list(report["findings"]) == ["in-quotes", "indent"]
    quoted = SOURCE[:400].count('"a b"') * 4 + SOURCE[:400].count('"""Say it."""') * 10
    assert report["base_accuracy"] == {"in-quotes": pytest.approx(1 - quoted / 400), "indent": None}
    quote = report["findings"]["in-quotes"][0]
    assert set(quote) == {
        "detector", "unit", "correlation", "accuracy", "threshold", "chance", "above_chance",
    }  # fmt: skip
    assert len(report["findings"]["indent"]) == 2
    assert report["findings"]["indent"][0]["accuracy"] is None
    gate = report["gates"][0]
    assert (gate["layer"], gate["gate"], len(gate["left"])) == (0, "i", 8)
    assert 0 <= gate["left_mean"] <= 1


def test_errors_name_what_is_wrong(checkpoint, tmp_path):
    run_dir, text = str(checkpoint / "run"), str(checkpoint / "text.py")
    missing = run("inspect", run_dir, "--text", str(tmp_path / "nope.py"), "--find")
    assert missing.exit_code == 2 and "nope.py" in missing.output
    empty = tmp_path / "empty.py"
    empty.write_text("", "utf-8")
    assert_error_line(run("inspect", run_dir, "--text", str(empty), "--find"), "is empty")
    typo = run("inspect", run_dir, "--text", text, "--find", "--detector", "in-quote")
    assert_error_line(typo, "unknown detector 'in-quote'; did you mean 'in-quotes'?")
    assert_error_line(run("inspect", run_dir, "--text", text), "--find")
    odd = tmp_path / "odd.py"
    odd.write_text("def f(x): return \u00fc\n", "utf-8")  # a character the run has not seen
    assert_error_line(run("inspect", run_dir, "--text", str(odd), "--find"), "--unknown")
    skipped = run("inspect", run_dir, "--text", str(odd), "--find", "--unknown", "skip", "--json")
    assert skipped.exit_code == 0, skipped.output
    assert json.loads(skipped.output)["characters"] == len("def f(x): return \n")


def test_a_detector_constant_over_the_text_gets_one_line(checkpoint, tmp_path):
    plain = tmp_path / "plain.py"
    plain.write_text("def f(x):\n    return g(x)\n", "utf-8")
    args = ["--text", str(plain), "--find", "--detector", "in-quotes", "--detector", "in-word"]
    result = run("inspect", str(checkpoint / "run"), *args)
    assert result.exit_code == 0, result.output
    assert "in-quotes       constant over this text: nothing to find" in result.output
    assert "in-word" in result.output


def test_a_long_text_is_cut_to_max_chars(checkpoint):
    args = ["--text", str(checkpoint / "text.py"), "--find", "--json", "--max-chars", "50"]
    result = run("inspect", str(checkpoint / "run"), *args)
    assert result.exit_code == 0
    assert "inspecting the first 50 characters" in result.stderr
    assert json.loads(result.stdout)["characters"] == 50
