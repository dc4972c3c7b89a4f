"""The command line, end to end (click's CliRunner and, once, a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
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


SMALL = ["--no-progress", "--set", "cell.hidden_size=16", "--set", "train.batch_size=4"]


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "corpus.txt"
    path.write_text("to be or not to be, that is the question. " * 40, "utf-8")
    return path


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


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from charseq import Pipeline

    spec = {
        "cell": {"hidden_size": 16, "num_layers": 1},
        "model": {"embedding_size": 8},
        "train": {"steps": 10, "batch_size": 4, "seq_len": 16},
    }
    text = "the cat sat on the mat.\nand the dog ran far.\n" * 30
    pipe = Pipeline.from_spec(spec, device="cpu").fit(text)
    path = tmp_path_factory.mktemp("ckpt") / "model"
    pipe.save(path)
    return path, Pipeline.load(path, device="cpu")


def test_sample_streams_what_generate_returns(checkpoint, monkeypatch):
    path, pipe = checkpoint
    pieces = []
    stream = type(pipe).stream

    def recording(self, *args, **kwargs):
        for piece in stream(self, *args, **kwargs):
            pieces.append(piece)
            yield piece

    monkeypatch.setattr(type(pipe), "stream", recording)
    args = ["--prime", "the ", "--length", "40", "--seed", "5", "--sampler", "temperature"]
    result = run("sample", str(path), *args, "--device", "cpu")
    assert result.exit_code == 0, result.output
    expected = pipe.generate("the ", 40, sampler="temperature", seed=5)
    assert result.output == "the " + expected + "\n"
    assert len(pieces) == 40  # written a character at a time


def test_sample_constraints_and_samples(checkpoint):
    path, pipe = checkpoint
    result = run("sample", str(path), "--length", "60", "--sampler", "greedy", "--stop", ".")
    assert result.exit_code == 0
    assert result.output == pipe.generate("", 60, sampler="greedy", stop=".") + "\n"
    result = run(
        "sample", str(path), "--length", "80", "--acrostic", "adt", "--allowed", "adt \n",
        "--temperature", "1.5", "--seed", "0", "--sampler", "temperature",
    )  # fmt: skip
    assert result.exit_code == 0
    text = result.output[:-1]
    assert set(text) <= set("adt \n") and text.startswith("a")
    for line, char in zip(text.split("\n"), "adt", strict=False):
        assert line[:1] in (char, "")
    result = run("sample", str(path), "--length", "10", "--num-samples", "3", "--seed", "1")
    assert result.exit_code == 0 and result.output.count("--- sample") == 3
    beam = run("sample", str(path), "--length", "20", "--sampler", "beam", "--num-beams", "3")
    assert beam.output == pipe.generate("", 20, sampler={"name": "beam", "num_beams": 3}) + "\n"
    implied = run("sample", str(path), "--length", "20", "--num-beams", "3")  # means beam
    assert implied.exit_code == 0 and implied.output == beam.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prime", "Zoo"], "'Z' (U+005A) at position 0"),
        (["--acrostic", "aQ"], "acrostic has 1 character outside the vocabulary"),
        (["--stop", "Q"], "stop string 'Q' can never be produced"),
        (["--length", "2000000"], "max_new_tokens must be in [0, 1000000]"),
        (["--length", "-3"], "max_new_tokens must be in"),
        (["--sampler", "temperature", "--temperature", "0"], "must be > 0"),
    ],
)
def test_sample_bad_input_fails_before_any_output(checkpoint, args, message):
    path, _ = checkpoint
    result = CliRunner().invoke(cli, ["sample", str(path), *args])
    assert result.exit_code == 1 and message in result.output
    assert result.output.startswith("Error:")  # nothing was generated first


def test_sample_unknown_policy_and_help(checkpoint):
    path, pipe = checkpoint
    result = run("sample", str(path), "--prime", "Zthe", "--unknown", "skip", "--length", "5",
                 "--sampler", "greedy")  # fmt: skip
    assert result.output == "Zthe" + pipe.generate("the", 5, sampler="greedy") + "\n"
    helped = run("sample", "--help").output
    for word in ["-primetext", "-length", "-temperature", "-sample 0", "-seed", "--stop"]:
        assert word in helped


def test_score_prints_a_summary(checkpoint, tmp_path):
    path, pipe = checkpoint
    sample = tmp_path / "sample.txt"
    sample.write_text("the dog sat on the cat.\n", "utf-8")
    result = run("score", str(path), str(sample), "--top", "3")
    assert result.exit_code == 0, result.output
    expected = pipe.score("the dog sat on the cat.\n", top=3)
    assert result.output == expected.summary() + "\n"
    assert result.output.startswith("24 characters: ") and result.output.count("position") == 3
    data = json.loads(run("score", str(path), str(sample), "--json").output)
    assert data["bpc"] == pytest.approx(expected.bpc) and len(data["surprising"]) == 10
    result = CliRunner().invoke(cli, ["score", str(path), "-"], input="the Zoo")
    assert result.exit_code == 1 and "'Z'" in result.output


def test_sample_passes_the_newer_sampler_options(checkpoint):
    from charseq.registry import get_registry

    path, pipe = checkpoint
    registry = get_registry()
    temperature = {o["name"] for o in registry.get("sampler", "temperature").describe()["options"]}
    beam = {o["name"] for o in registry.get("sampler", "beam").describe()["options"]}
    if not {"min_p", "repetition_penalty"} <= temperature or "num_return_sequences" not in beam:
        pytest.skip("these sampler options are not registered yet")
    args = ["--sampler", "temperature", "--min-p", "0.1", "--repetition-penalty", "1.3"]
    result = run("sample", str(path), *args, "--seed", "2", "--length", "30")
    section = {"name": "temperature", "min_p": 0.1, "repetition_penalty": 1.3}
    assert result.output == pipe.generate("", 30, sampler=section, seed=2) + "\n"
    args = ["--sampler", "beam", "--num-beams", "3", "--num-return-sequences", "2"]
    result = run("sample", str(path), *args, "--length", "12")
    section = {"name": "beam", "num_beams": 3, "num_return_sequences": 2}
    expected = pipe.generate("", 12, sampler=section)
    assert len(expected) == 2 and result.output.count("--- sample") == 2
    for text in expected:
        assert text + "\n" in result.output


def test_sample_set_passes_any_sampler_option(checkpoint):
    path, pipe = checkpoint
    args = ["--sampler", "beam", "--set", "num_beams=3", "--set", "length_penalty=0.5"]
    result = run("sample", str(path), *args, "--length", "15")
    section = {"name": "beam", "num_beams": 3, "length_penalty": 0.5}
    assert result.output == pipe.generate("", 15, sampler=section) + "\n"
    for bad, message in [
        ("lenght_penalty=1", "did you mean 'length_penalty'"),
        ("num_beams", "--set 'num_beams': expected KEY=VALUE, e.g. length_penalty=0.8"),
        ("name=greedy", "choose the sampler with --sampler"),
    ]:
        result = CliRunner().invoke(cli, ["sample", str(path), "--sampler", "beam", "--set", bad])
        assert result.exit_code == 1 and message in result.output, result.output


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


def test_sample_ends_a_line_once_and_score_refuses_a_negative_top(tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("to be\nor not\nto be\n" * 60)
    out = tmp_path / "run"
    assert (
        run("train", "--data", str(lines), "--out", str(out), "--steps", "2", *SMALL).exit_code == 0
    )
    result = run("sample", str(out), "--length", "300", "--stop", "\n", "--seed", "0")
    assert result.exit_code == 0 and len(result.output) <= 300  # the stop string was written
    assert result.output.endswith("\n") and result.output.count("\n") == 1  # no blank line
    result = run("score", str(out), str(lines), "--top", "-1")
    assert result.exit_code == 2 and "-1 is not in the range x>=0" in result.output


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


def test_beam_options_keep_a_beam_spec_of_the_checkpoint(corpus, tmp_path):
    out = tmp_path / "run"
    beam = ["--set", "sampler.name=beam", "--set", "sampler.num_beams=8"]
    args = ["train", "--data", str(corpus), "--out", str(out), "--steps", "2", *beam, *SMALL]
    assert run(*args).exit_code == 0
    result = run("sample", str(out), "--length", "5", "--num-return-sequences", "6")
    assert result.exit_code == 0, result.output
    assert result.output.count("--- sample") == 6  # num_beams=8 kept from the checkpoint


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


def test_num_beams_zero_is_named_as_out_of_range(corpus, tmp_path):
    out = tmp_path / "run"
    assert (
        run("train", "--data", str(corpus), "--out", str(out), "--steps", "2", *SMALL).exit_code
        == 0
    )
    for flag in ("--num-beams", "--num-return-sequences"):
        result = run("sample", str(out), flag, "0")
        assert result.exit_code == 1 and "must be >= 1, got 0" in result.output, result.output


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


def test_a_run_directory_another_process_holds_is_left_alone(corpus, tmp_path):
    from charseq.checkpoint import RunLock

    out = tmp_path / "theirs"
    out.mkdir()
    with RunLock(out):  # another process has just created and locked it
        result = run("train", "--data", str(corpus), "--out", str(out), "--steps", "2", *SMALL)
        assert result.exit_code == 1 and "another process is training into" in result.output
        assert out.is_dir() and (out / ".charseq.lock").is_file()  # not deleted


# -- the Error: contract: what a command is given ends in one Error: line and status 1 ----------


def assert_error_line(result, message):
    assert result.exit_code == 1, result.output
    assert result.output.count("Error:") == 1 and "Traceback" not in result.output
    assert result.output.rstrip("\n").splitlines()[-1].startswith("Error: ")
    assert message in result.output, result.output


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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--num-samples", str(10**30)], "num_samples must be at most 1000000 (MAX_NUM_SAMPLES"),
        (["--device", "meta"], "device 'meta': charseq runs on cpu, cuda, mps"),
        (["--device", "xla"], "device 'xla': charseq runs on cpu, cuda, mps"),
    ],
)
def test_sample_input_it_cannot_use_is_one_error_line(checkpoint, args, message):
    path, pipe = checkpoint
    assert_error_line(run("sample", str(path), "--length", "5", *args), message)


def test_an_absurd_sample_count_is_a_generation_error_in_python_too(checkpoint):
    from charseq.constraints import GenerationError

    _, pipe = checkpoint
    with pytest.raises(GenerationError, match="num_samples must be at most 1000000"):
        pipe.generate("", 5, num_samples=10**30)
    with pytest.raises(GenerationError, match="got an integer of 5001 digits"):
        pipe.generate("", 5, num_samples=10**5000)  # too long to print: its size is named


def test_none_is_the_empty_value_the_message_offers(checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, pipe = checkpoint
    result = run("train", "--set", "sampler.top_k=3", "--set", "sampler.top_k=x", "--print-spec")
    assert_error_line(result, "sampler.top_k: expected int | none, got str 'x'")
    result = run("train", "--set", "sampler.top_k=none", "--print-spec")
    assert result.exit_code == 0 and "top_k" not in result.output  # unset, as by default
    args = ["--sampler", "temperature", "--seed", "3", "--length", "20"]
    result = run("sample", str(path), *args, "--set", "top_k=none")
    assert result.exit_code == 0, result.output
    section = {"name": "temperature", "top_k": None}
    assert result.output == pipe.generate("", 20, sampler=section, seed=3) + "\n"


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
    assert "give a higher one (steps=..., or --steps on the command line)" in result.output


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
