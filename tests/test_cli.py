"""The command line as a whole, end to end (click's CliRunner and, once, a real subprocess):
the group, ``plugins``, a run through every command, and how every command ends (status,
``Error:`` line)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

import charseq.cli.evaluate
from charseq.cli import cli
from charseq.errors import CharseqError
from tests._cli import SMALL, run
from tests.test_registry import EXPECTED


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


def test_plugins_lists_the_constraint_kind():
    listing = json.loads(run("plugins", "--json").output)
    found = {c["name"]: c for c in listing["components"] if c["kind"] == "constraint"}
    assert {"stop", "allowed", "acrostic", "form"} <= set(found)
    assert all(c["distribution"] == "charseq" for c in found.values())
    assert {o["name"] for o in found["acrostic"]["options"]} == {"heads", "after", "at_start"}
    assert [o["name"] for o in found["form"]["options"]] == ["template"]
    text = run("plugins").output.splitlines()
    assert "constraints" in text  # a heading of its own, after the samplers
    assert text.index("constraints") > text.index("samplers")
    form = next(line for line in text if line.lstrip().startswith("form "))
    assert "wujue" in form and "[charseq " in form


def test_plugins_lists_the_installed_example_plugin():
    listing = json.loads(run("plugins", "--json").output)
    [mgu] = [c for c in listing["components"] if c["name"] == "mgu"]
    assert (mgu["kind"], mgu["distribution"]) == ("cell", "charseq-mgu")
    assert "mgu" in run("plugins").output


def test_train_eval_sample_and_resume(corpus, tmp_path):
    out = tmp_path / "run"
    result = run(
        "train",
        "--data",
        str(corpus),
        "--out",
        str(out),
        "--steps",
        "5",
        "--set",
        "cell.name=mgu",
        *SMALL,
    )
    assert result.exit_code == 0, result.output
    assert "stopped at step 5 (steps), best val BPC" in result.output
    assert json.loads((out / "latest.json").read_text())["latest"] == "step-00000005"
    assert (out / "metrics.jsonl").is_file() and (out / "best" / "manifest.json").is_file()

    result = run("sample", str(out), "--prime", "to be", "--length", "25", "--seed", "1")
    assert result.exit_code == 0
    assert result.output.startswith("to be") and len(result.output.rstrip("\n")) == 30
    again = run("sample", str(out), "--prime", "to be", "--length", "25", "--seed", "1")
    assert again.output == result.output

    result = run("eval", str(out))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("test: ") and "nats/char" in result.output
    scores = json.loads(run("eval", str(out), "--split", "val", "--json").output)
    assert scores["split"] == "val" and scores["bpc"] == pytest.approx(
        scores["nats"] / 0.693147, 1e-4
    )
    other = tmp_path / "other.txt"
    other.write_text("that is the question. to be or not to be. " * 3)
    scores = json.loads(run("eval", str(out), "--data", str(other), "--json").output)
    assert scores["split"] == "all" and scores["tokens"] == len(other.read_text()) - 1

    result = run("train", "--resume", str(out), "--steps", "8", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "stopped at step 8" in result.output


def test_missing_data_and_checkpoint_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["train", "--data", str(tmp_path / "missing.txt")])
    assert result.exit_code == 1 and "no such file" in result.output
    result = CliRunner().invoke(cli, ["sample", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "no such checkpoint or run directory" in result.output


def test_the_installed_script_runs():
    done = subprocess.run(
        [sys.executable, "-m", "charseq", "--version"], capture_output=True, text=True, check=True
    )
    assert "0.1.0" in done.stdout


def test_sample_into_a_closed_pipe_or_interrupted_exits_quietly(corpus, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    assert (
        run("train", "--data", str(corpus), "--out", str(out), "--steps", "2", *SMALL).exit_code
        == 0
    )
    command = [sys.executable, "-m", "charseq", "sample", str(out), "--length", "1000000"]
    reader = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader.stdout.read(10)
    reader.stdout.close()  # as `| head -c 10` does
    _, err = reader.communicate(timeout=120)
    assert (reader.returncode, err) == (0, b"")
    writer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    writer.stdout.read(10)  # generating now
    time.sleep(0.2)
    writer.send_signal(signal.SIGINT)
    _, err = writer.communicate(timeout=120)
    assert writer.returncode == 130 and b"Aborted" not in err and b"Traceback" not in err


def test_what_the_machine_refuses_is_an_error_line(corpus, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert (
        run("train", "--data", str(corpus), "--out", str(out), "--steps", "2", *SMALL).exit_code
        == 0
    )

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(out / "model.safetensors"))

    monkeypatch.setattr("charseq.checkpoint.run.read_tensors", refuse)  # what loads read
    result = run("sample", str(out))
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "model.safetensors: Permission denied" in (
        result.output
    )

    def no_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9 TB")

    monkeypatch.setattr("charseq.pipeline.Pipeline.load", no_memory)
    result = run("sample", str(out))
    assert result.exit_code == 1 and "Error: not enough memory for this" in result.output

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("charseq.pipeline.Pipeline.from_spec", interrupted)
    result = run("train", "--data", str(corpus), "--out", str(tmp_path / "new"), *SMALL)
    assert result.exit_code == 130 and not (tmp_path / "new").exists()


# -- the library speaks Python, the command line flags: an error naming its argument ------------


class NamedArgumentError(CharseqError):
    """A library error that names the Python argument it is about (as ``error.argument``)."""

    def __init__(self, message, argument):
        super().__init__(message)
        self.argument = argument


@pytest.mark.parametrize(
    ("argument", "message", "shown"),
    [
        ("files", "no text: pass files=... or a run", "no text: pass --data PATH or a run"),
        ("unknown", "use unknown='skip' to drop them", "use --unknown skip to drop them"),
        ("split", "the test part is empty (split='test')", "the test part is empty (--split test)"),
        ("sampler", "no such sampler=...; files=...", "no such sampler=...; files=..."),  # no flag
        ("files", "pass files=['a b', 'c'] here", "pass --data 'a b' --data c here"),
        (("files", "split"), "files=[...] with split='val'", "--data PATH with --split val"),
        (None, "unknown='skip' reads as it is", "unknown='skip' reads as it is"),
    ],
)
def test_an_error_naming_its_python_argument_shows_the_commands_flag(
    monkeypatch, argument, message, shown
):
    def refuse(*args, **kwargs):
        raise NamedArgumentError(message, argument)

    monkeypatch.setattr(charseq.cli.evaluate, "evaluate_checkpoint", refuse)
    result = run("eval", "runs/x")
    assert result.exit_code == 1 and result.output == f"Error: {shown}\n"


def test_the_notes_of_an_error_end_its_error_line(monkeypatch):
    def refuse(*args, **kwargs):
        error = CharseqError("the text holds 'ü'.")
        error.add_note("When evaluating: unknown='skip' or 'replace' (--unknown).")
        raise error

    monkeypatch.setattr(charseq.cli.evaluate, "evaluate_checkpoint", refuse)
    result = run("eval", "runs/x")
    assert result.output == (
        "Error: the text holds 'ü'. When evaluating: unknown='skip' or 'replace' (--unknown).\n"
    )
