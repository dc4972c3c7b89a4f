"""The command line, end to end (click's CliRunner and, once, a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from charseq.cli import cli
from tests.test_registry import EXPECTED


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_plugins_json_lists_every_builtin_with_owner_and_options():
    result = run("plugins", "--json")
    assert result.exit_code == 0
    listing = json.loads(result.output)
    found = {(c["kind"], c["name"]): c for c in listing["components"]}
    for kind, names in EXPECTED.items():
        for name in names:
            entry = found[(kind, name)]
            assert entry["distribution"] == "charseq" and entry["status"] == "loaded"
            assert isinstance(entry["options"], list)
    assert {o["name"] for o in found[("sampler", "temperature")]["options"]} >= {
        "temperature",
        "top_k",
        "top_p",
    }
    assert listing["failed"] == []


def test_plugins_lists_the_installed_example_plugin():
    listing = json.loads(run("plugins", "--json").output)
    [mgu] = [c for c in listing["components"] if c["name"] == "mgu"]
    assert (mgu["kind"], mgu["distribution"]) == ("cell", "charseq-mgu")
    assert "mgu" in run("plugins").output


def test_train_then_sample(tmp_path):
    data = tmp_path / "corpus.txt"
    data.write_text("to be or not to be, that is the question. " * 40, "utf-8")
    out = tmp_path / "run"
    result = run(
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--steps",
        "5",
        "--no-progress",
        "--set",
        "cell.hidden_size=16",
        "--set",
        "train.batch_size=4",
        "--set",
        "cell.name=mgu",
    )
    assert result.exit_code == 0, result.output
    assert (out / "manifest.json").is_file()
    result = run("sample", str(out), "--prime", "to be", "--length", "25", "--seed", "1")
    assert result.exit_code == 0
    assert result.output.startswith("to be") and len(result.output.rstrip("\n")) == 30
    again = run("sample", str(out), "--prime", "to be", "--length", "25", "--seed", "1")
    assert again.output == result.output


def test_bad_spec_fails_before_reading_data(tmp_path):
    result = CliRunner().invoke(
        cli, ["train", "--data", str(tmp_path / "missing.txt"), "--set", "cell.hidden_size=0"]
    )
    assert result.exit_code == 1
    assert "cell.hidden_size: must be >= 1, got 0" in result.output
    result = CliRunner().invoke(cli, ["train", "--set", "cell.hiden_size=3"])
    assert "did you mean 'hidden_size'" in result.output
    result = CliRunner().invoke(cli, ["train", "--set", "nonsense"])
    assert "expected KEY=VALUE" in result.output


def test_missing_data_and_checkpoint_errors(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--data", str(tmp_path / "missing.txt")])
    assert result.exit_code == 1 and "no such file" in result.output
    result = CliRunner().invoke(cli, ["sample", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "no such checkpoint directory" in result.output


def test_the_installed_script_runs():
    done = subprocess.run(
        [sys.executable, "-m", "charseq", "--version"], capture_output=True, text=True, check=True
    )
    assert "0.1.0" in done.stdout
