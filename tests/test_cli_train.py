"""``charseq train``: new runs, ``--overwrite``, ``--resume`` and the flags each refuses."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from charseq.cli import cli
from charseq.cli.train import _describe_corpus
from charseq.corpus import python_source_files
from tests._cli import SMALL, assert_error_line, run


def test_an_existing_run_is_never_overwritten_by_accident(corpus, tmp_path):
    out = tmp_path / "run"
    assert (
        run("train", "--data", str(corpus), "--out", str(out), "--steps", "2", *SMALL).exit_code
        == 0
    )
    before = (out / "latest.json").read_text()
    result = run("train", "--data", str(corpus), "--out", str(out), "--steps", "2", *SMALL)
    assert (
        result.exit_code == 1 and "already holds a run; continue it with --resume" in result.output
    )
    assert (out / "latest.json").read_text() == before
    result = run(
        "train", "--data", str(corpus), "--out", str(out), "--steps", "3", "--overwrite", *SMALL
    )
    assert result.exit_code == 0 and "step-00000003" in (out / "latest.json").read_text()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    for flags in ((), ("--overwrite",)):
        result = run("train", "--data", str(corpus), "--out", str(precious), *flags, *SMALL)
        assert result.exit_code == 1 and "is not empty and is not a charseq run" in result.output
        assert (precious / "thesis.txt").read_text() == "years of work"


def test_overwrite_keeps_the_old_run_until_the_new_one_has_a_checkpoint(corpus, tmp_path):
    out = tmp_path / "run"
    assert (
        run("train", "--data", str(corpus), "--out", str(out), "--steps", "2", *SMALL).exit_code
        == 0
    )
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("abc")
    result = run("train", "--data", str(tiny), "--out", str(out), "--overwrite", *SMALL)
    assert result.exit_code == 1 and "too few for a training part" in result.output
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # nothing aside


def test_an_unwritable_output_fails_before_training(corpus, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run("train", "--data", str(corpus), "--out", str(blocker / "run"), *SMALL)
    assert result.exit_code == 1 and "cannot write to --out" in result.output
    result = run("train", "--data", str(corpus), "--out", str(blocker), *SMALL)
    assert result.exit_code == 2 and "is a file" in result.output  # click checks --out


def test_bad_corpora_get_specific_errors(corpus, tmp_path):
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\u00e9 au lait".encode("latin-1"))
    result = run("train", "--data", str(latin), *SMALL)
    assert result.exit_code == 1
    assert "latin1.txt" in result.output and "at byte offset 3" in result.output
    assert "--encoding" in result.output and "byte" in result.output
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x00\x01\x02binary")
    result = run("train", "--data", str(binary), *SMALL)
    assert result.exit_code == 1 and "blob.bin" in result.output and "binary" in result.output
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    result = run("train", "--data", str(empty_dir), *SMALL)
    assert result.exit_code == 1 and "nothing" in result.output
    assert not (tmp_path / "runs" / "latest").exists()  # a failed start leaves no run behind


def test_bad_spec_fails_before_reading_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli, ["train", "--data", str(tmp_path / "missing.txt"), "--set", "cell.hidden_size=0"]
    )
    assert result.exit_code == 1
    assert "cell.hidden_size: must be >= 1, got 0" in result.output
    result = CliRunner().invoke(cli, ["train", "--set", "cell.hiden_size=3"])
    assert "did you mean 'hidden_size'" in result.output
    result = CliRunner().invoke(cli, ["train", "--set", "nonsense"])
    assert "expected KEY=VALUE" in result.output


def test_resume_refuses_an_out_of_its_own(corpus, tmp_path):
    out = tmp_path / "run"
    assert (
        run("train", "--data", str(corpus), "--out", str(out), "--steps", "2", *SMALL).exit_code
        == 0
    )
    for flags in (("--out", str(tmp_path / "other")), ("--overwrite",)):
        result = run("train", "--resume", str(out), "--steps", "3", *flags)
        assert (
            result.exit_code == 1 and "--resume writes into the run it continues" in result.output
        )
    assert not (tmp_path / "other").exists()


def test_print_spec_shows_every_option_of_the_resolved_spec_and_trains_nothing(
    tmp_path, monkeypatch
):
    from charseq import PipelineSpec

    monkeypatch.chdir(tmp_path)

    result = run("train", "--preset", "char-rnn", "--set", "cell.hidden_size=256", "--print-spec")
    assert result.exit_code == 0
    spec = PipelineSpec.from_toml(result.output)
    assert spec.cell.layout.hidden_size == 256 and spec.optimizer.name == "rmsprop"
    assert spec.to_toml() == result.output  # every option spelled out
    assert not (tmp_path / "runs").exists()


def test_print_spec_under_torchrun_prints_one_copy_from_rank_0(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    printed = {}
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        result = run("train", "--preset", "char-rnn", "--print-spec")
        assert result.exit_code == 0
        printed[rank] = result.output
    assert "[cell]" in printed["0"] and printed["1"] == ""


def test_a_run_directory_another_process_holds_is_left_alone(corpus, tmp_path):
    from charseq.checkpoint import RunLock

    out = tmp_path / "theirs"
    out.mkdir()
    with RunLock(out):  # another process has just created and locked it
        result = run("train", "--data", str(corpus), "--out", str(out), "--steps", "2", *SMALL)
        assert result.exit_code == 1 and "another process is training into" in result.output
        assert out.is_dir() and (out / ".charseq.lock").is_file()  # not deleted


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "train=5", "--set", "train.steps=3"], "train: expected a table/dict, got int 5"),
        (["--set", "train.steps=" + "9" * 5000], "train.steps: a number of more than 4300 digits"),
        (["--steps", "3", "--sample-every", "-1"], "--sample-every must be >= 0"),
        (["--device", "xla"], "device 'xla': charseq runs on cpu, cuda, mps"),
        (["--device", "vulkan"], "device 'vulkan': charseq runs on cpu, cuda, mps"),
        (["--device", "meta"], "device 'meta': charseq runs on cpu, cuda, mps"),
        (["--set", "optimizer.lr=1e300"], "optimizer.lr: must fit in float32"),
        (["--set", "optimizer.lr=3e38"], "the optimizer's update overflowed float32"),
    ],
)
def test_train_input_it_cannot_use_is_one_error_line(corpus, tmp_path, args, message):
    out = tmp_path / "run"
    result = run("train", "--data", str(corpus), "--out", str(out), "--steps", "2", *SMALL, *args)
    assert_error_line(result, message)
    assert not out.exists()


def test_a_refused_resume_says_what_to_do_in_its_own_terms(corpus, tmp_path):
    from charseq.checkpoint import RunLock

    out = tmp_path / "run"
    args = ["--data", str(corpus), "--out", str(out), "--steps", "2", *SMALL]
    assert run("train", *args).exit_code == 0
    with RunLock(out):  # another process trains it now
        result = run("train", "--resume", str(out), "--steps", "3", "--no-progress")
        assert_error_line(result, f"another process is training into {out} now; resume it once")
        assert "choose another out" not in result.output
        result = run("train", *args, "--overwrite")
        assert_error_line(
            result, f"into --out {out} now; wait for it to finish, or choose another --out"
        )
    result = run("train", "--resume", str(out), "--steps", "1", "--no-progress")
    assert "give a higher one (--steps N)" in result.output  # the library's steps=...


def test_a_resume_that_stretches_the_cosine_schedule_says_so(corpus, tmp_path):
    cosine = [*SMALL, "--set", "train.schedule=cosine", "--data", str(corpus)]
    assert run("train", *cosine, "--out", "stretched", "--steps", "4").exit_code == 0
    result = run("train", "--resume", "stretched", "--steps", "8", "--no-progress")
    assert result.exit_code == 0, result.output
    [note] = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert "the cosine schedule now ends at step 8 (train.steps) instead of 4" in note
    assert "from step 5 the learning rate is 0.55x optimizer.lr instead of 0.1x" in note

    whole = ["--out", "whole", "--steps", "8"]
    assert run("train", *cosine, *whole).exit_code == 0
    planned = ["--out", "planned", "--steps", "4", "--set", "train.schedule_steps=8"]
    assert run("train", *cosine, *planned).exit_code == 0
    result = run("train", "--resume", "planned", "--steps", "8", "--no-progress")
    assert result.exit_code == 0 and "warning" not in result.output, result.output

    def losses(name):
        records = map(json.loads, (tmp_path / name / "metrics.jsonl").read_text().splitlines())
        return [record["loss"] for record in records if record["event"] == "step"]

    assert len(losses("whole")) == 8 and losses("planned") == losses("whole")  # exactly
    assert losses("stretched")[4:] != losses("whole")[4:]


def test_without_data_the_run_says_it_trains_on_pythons_own_source():
    files = python_source_files()
    line = _describe_corpus(files, given=False)
    megabytes = sum(path.stat().st_size for path in files) / 1e6
    assert line == (
        f"corpus: Python's own standard-library source ({len(files)} files, {megabytes:.1f} MB "
        f"under {files[0].parent}; no --data)"
    )
