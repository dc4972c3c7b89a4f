"""``charseq sample`` and ``charseq score`` on a checkpoint."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from charseq.cli import cli
from tests._cli import SMALL, assert_error_line, run
from tests._helpers import quatrains


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


def test_beam_options_keep_a_beam_spec_of_the_checkpoint(corpus, tmp_path):
    out = tmp_path / "run"
    beam = ["--set", "sampler.name=beam", "--set", "sampler.num_beams=8"]
    args = ["train", "--data", str(corpus), "--out", str(out), "--steps", "2", *beam, *SMALL]
    assert run(*args).exit_code == 0
    result = run("sample", str(out), "--length", "5", "--num-return-sequences", "6")
    assert result.exit_code == 0, result.output
    assert result.output.count("--- sample") == 6  # num_beams=8 kept from the checkpoint


def test_num_beams_zero_is_named_as_out_of_range(corpus, tmp_path):
    out = tmp_path / "run"
    assert (
        run("train", "--data", str(corpus), "--out", str(out), "--steps", "2", *SMALL).exit_code
        == 0
    )
    for flag in ("--num-beams", "--num-return-sequences"):
        result = run("sample", str(out), flag, "0")
        assert result.exit_code == 1 and "must be >= 1, got 0" in result.output, result.output


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


# -- verse: clause acrostics and forms, on a corpus in tensorflow_poems' format -----------------


@pytest.fixture(scope="module")
def verse(tmp_path_factory):
    """A tiny model trained on 40 made-up quatrains in tensorflow_poems' format."""
    from charseq import Pipeline

    spec = {
        "cell": {"hidden_size": 16, "num_layers": 1},
        "model": {"embedding_size": 8},
        "train": {"steps": 10, "batch_size": 4, "seq_len": 16},
    }
    pipe = Pipeline.from_spec(spec, device="cpu").fit(quatrains())
    path = tmp_path_factory.mktemp("verse") / "model"
    pipe.save(path)
    return path, Pipeline.load(path, device="cpu")


def test_sample_writes_a_clause_acrostic_in_a_verse_form(verse):
    from charseq.constraints import FORMS, fits

    path, pipe = verse
    args = ["--prime", "題1:", "--acrostic", "春夏秋冬", "--acrostic-after", "，。:"]
    result = run("sample", str(path), *args, "--form", "wujue", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("題1:") and result.output.endswith("。\n")
    poem = result.output[len("題1:") : -1]  # one quatrain, and nothing after it
    assert fits(poem, FORMS["wujue"])  # 5 characters, ，, 5, 。, 5, ，, 5, 。
    clauses = poem.replace("。", "，").split("，")[:4]
    assert [len(c) for c in clauses] == [5, 5, 5, 5]
    assert [c[0] for c in clauses] == list("春夏秋冬")
    kwargs = {"acrostic": "春夏秋冬", "acrostic_after": "，。:", "form": "wujue", "seed": 1}
    assert poem == pipe.generate("題1:", 500, **kwargs)
    # with a form and no --acrostic-after, the heads open the form's clauses
    same = run("sample", str(path), *args[:4], "--form", "wujue", "--seed", "1")
    assert same.output == result.output
    # a constraint plugin by its JSON table: the same form as --form
    table = '{"name": "form", "template": "wujue"}'
    plugin = run("sample", str(path), *args, "--constraint", table, "--seed", "1")
    assert plugin.output == result.output
    custom = run("sample", str(path), "--form", "???:???", "--seed", "2", "--length", "100")
    assert custom.exit_code == 0 and fits(custom.output[:-1], "???:???")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--form", "wujeu"], "unknown form 'wujeu'; did you mean 'wujue'?"),
        (["--form", "wujue", "--acrostic", "春龍"], "'龍' (U+9F8D) at position 1"),
        (
            ["--form", "wujue", "--acrostic", "春夏秋冬山"],
            "the acrostic has 5 heads and the form 'wujue' has room for 4",
        ),
        (["--form", "?????!?????!"], "needs '!' (U+0021), which the vocabulary cannot write"),
        (["--form", "qijue", "--allowed", "，。"], "free places that no character of the vocab"),
        (["--acrostic-after", "，"], "--acrostic-after '，' needs --acrostic TEXT"),
        (["--constraint", "rhyme"], "unknown constraint 'rhyme' (available: acrostic, allowed"),
        (["--constraint", "{nope"], "--constraint '{nope' is not JSON"),
        (["--constraint", "{}"], "constraints[0] needs a name"),
        (["--constraint", '{"name": "form", "templat": "x"}'], "did you mean 'template'?"),
    ],
)
def test_sample_refuses_a_verse_it_cannot_write_before_any_output(verse, args, message):
    path, _ = verse
    result = run("sample", str(path), "--prime", "題1:", *args)
    assert_error_line(result, message)
    assert result.output.startswith("Error:")  # nothing was generated first
