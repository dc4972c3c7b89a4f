"""Pipeline: compose from a spec, fit, generate, evaluate, save and load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from charseq import Callback, Pipeline, SpecError
from charseq.checkpoint import CheckpointError
from charseq.errors import CharseqError
from tests._helpers import SMALL as SHARED_SMALL

TEXT = "the cat sat on the mat. " * 60
SMALL = {**SHARED_SMALL, "train": {**SHARED_SMALL["train"], "steps": 30}}


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_fit_start(self, trainer):
        self.events.append(("start", trainer.spec.train.steps))

    def on_step_end(self, trainer, step, metrics):
        self.events.append(("step", step, metrics["loss"]))

    def on_eval(self, trainer, step, metrics):
        self.events.append(("eval", step, metrics["val_bpc"]))

    def on_fit_end(self, trainer, step, reason):
        self.events.append(("end", step, reason))


@pytest.fixture(scope="module")
def trained():
    return Pipeline.from_spec(SMALL, device="cpu").fit(TEXT)


def test_fit_learns_and_reports_through_callbacks():
    recorder = Recorder()
    pipe = Pipeline.from_spec(SMALL, device="cpu").fit(TEXT, steps=40, callbacks=[recorder])
    losses = [e[2] for e in recorder.events if e[0] == "step"]
    assert recorder.events[0] == ("start", 40) and recorder.events[-1] == ("end", 40, "steps")
    assert [e[1] for e in recorder.events if e[0] == "eval"] == [40]  # eval_every 500 > steps
    assert len(losses) == 40 and losses[-1] < 0.6 * losses[0]
    assert pipe.evaluate(TEXT[:300])["bpc"] < losses[0] / 0.6931


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm", "mgu"])
def test_every_cell_trains_and_samples(cell):
    spec = {
        **SMALL,
        "cell": {**SMALL["cell"], "name": cell},
        "train": {**SMALL["train"], "steps": 3},
    }
    pipe = Pipeline.from_spec(spec, device="cpu").fit(TEXT)
    text = pipe.generate("the ", 20, seed=0)
    assert len(text) == 20 and set(text) <= set(TEXT)


def test_generate_is_reproducible_with_a_seed_and_batches_samples(trained):
    first = trained.generate("the", 40, seed=3)
    assert trained.generate("the", 40, seed=3) == first
    samples = trained.generate("the", 40, seed=3, num_samples=4)
    assert isinstance(samples, list) and len(samples) == 4
    assert all(len(s) == 40 for s in samples)


def test_sampler_by_name_dict_or_object(trained):
    from charseq.builtins.samplers import GreedySampler

    greedy = trained.generate("the c", 10, sampler="greedy")
    assert trained.generate("the c", 10, sampler={"name": "greedy"}) == greedy
    assert trained.generate("the c", 10, sampler=GreedySampler()) == greedy
    assert trained.generate("the c", 10, sampler={"name": "temperature", "top_k": 1}) == greedy
    assert trained.generate("the c", 10, sampler={"name": "beam", "num_beams": 1}) == greedy
    with pytest.raises(SpecError, match="sampler.temperature: must be > 0"):
        trained.generate("the", 5, sampler={"name": "temperature", "temperature": 0})


def test_bad_generation_input_fails_before_work(trained):
    with pytest.raises(ValueError, match="max_new_tokens must be in"):
        trained.generate("the", -1)
    with pytest.raises(ValueError, match="num_samples must be an int >= 1"):
        trained.generate("the", 5, num_samples=0)
    with pytest.raises(CharseqError, match="'Z'"):
        trained.generate("Zebra", 5)
    with pytest.raises(CharseqError, match="no model yet"):
        Pipeline.from_spec(SMALL).generate("x", 3)


def test_a_corpus_smaller_than_one_batch_adapts_with_a_warning():
    pipe = Pipeline.from_spec({**SMALL, "train": {"steps": 2, "batch_size": 50, "seq_len": 50}})
    with pytest.warns(UserWarning, match="smaller than one batch of 50x50"):
        pipe.fit("abcdefghij" * 3)
    with pytest.raises(CharseqError, match="the corpus has 1 tokens: .* it needs at least 6"):
        Pipeline.from_spec(SMALL).fit("a")
    with pytest.raises(CharseqError, match="cannot fit the 'char' tokenizer on empty text"):
        Pipeline.from_spec(SMALL).fit("")


def test_save_and_load_give_the_same_model(trained, tmp_path):
    path = trained.save(tmp_path / "ckpt")
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "model.safetensors"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["spec"] == trained.spec.to_dict()
    assert manifest["plugins"]["cell"]["distribution"] == "charseq"
    loaded = Pipeline.load(path, device="cpu")
    assert loaded.spec == trained.spec and loaded.steps_trained == trained.steps_trained
    for name, tensor in trained.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], tensor, rtol=0, atol=0)
    assert loaded.generate("the", 30, seed=1) == trained.generate("the", 30, seed=1)


def test_a_failed_save_leaves_the_previous_checkpoint(trained, tmp_path, monkeypatch):
    path = trained.save(tmp_path / "ckpt")
    before = (path / "model.safetensors").read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("safetensors.torch.save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        trained.save(path)
    assert (path / "model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary left behind


def test_save_refuses_to_overwrite_a_directory_that_is_not_a_checkpoint(trained, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.txt").write_text("precious")
    with pytest.raises(CheckpointError, match="not a charseq checkpoint; refusing"):
        trained.save(tmp_path / "notes")
    assert (tmp_path / "notes" / "thesis.txt").read_text() == "precious"


def test_loading_bad_checkpoints_gives_clear_errors(trained, tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint or run directory"):
        Pipeline.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no manifest.json"):
        Pipeline.load(tmp_path / "empty")
    path = trained.save(tmp_path / "ckpt")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["plugins"]["cell"] = {"name": "zzz", "distribution": "charseq-zzz", "version": "9"}
    manifest["spec"]["cell"]["name"] = "zzz"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        CheckpointError, match="cell 'zzz' from charseq-zzz 9: install the plugin that provides"
    ):
        Pipeline.load(path)
    manifest["plugins"]["cell"] = {"name": "zzz", "distribution": "<python>", "version": ""}
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="'zzz' from <python>: install"):
        Pipeline.load(path)
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="newer than this charseq reads"):
        Pipeline.load(path)


def test_loading_never_unpickles(trained, tmp_path):
    path = trained.save(tmp_path / "ckpt")
    (path / "model.safetensors").write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(CheckpointError, match="unreadable weights"):
        Pipeline.load(path)


def test_evaluate_in_chunks_equals_one_pass(trained):
    text = TEXT[:700]
    whole = trained.evaluate(text, chunk_size=10_000)
    chunked = trained.evaluate(text, chunk_size=64)
    assert chunked["nats"] == pytest.approx(whole["nats"], rel=1e-5)
    assert whole["bpc"] == pytest.approx(whole["nats"] / 0.6931471805599453)


def test_the_same_spec_and_text_give_the_same_weights():
    spec = {**SMALL, "cell": {**SMALL["cell"], "dropout": 0.3, "num_layers": 2}}
    a = Pipeline.from_spec(spec, device="cpu").fit(TEXT, steps=5)
    torch.rand(7)  # whatever happened to the global generator in between
    b = Pipeline.from_spec(spec, device="cpu").fit(TEXT, steps=5)
    for (name, x), y in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        assert torch.equal(x, y), name


def test_primes_and_scored_texts_are_normalised_as_the_corpus_was(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the ﬁrst ﬁsh ﬁnds its ﬁns.\n" * 40, "utf-8")  # "ﬁ" is U+FB01
    spec = {"cell": {"hidden_size": 8, "num_layers": 1}, "train": {"steps": 2, "seq_len": 8}}
    pipe = Pipeline.from_spec(spec, device="cpu").fit(
        files=corpus, normalize="NFKC", out=tmp_path / "run"
    )
    assert "\ufb01" not in pipe.tokenizer.decode(range(pipe.tokenizer.vocab_size))
    loaded = Pipeline.load(tmp_path / "run", device="cpu")
    assert loaded.normalize == "NFKC"
    for p in (pipe, loaded):
        assert p.generate("\ufb01", 5, sampler="greedy") == p.generate("fi", 5, sampler="greedy")
        assert p.score("the ﬁsh").total_nats == p.score("the fish").total_nats
        assert p.evaluate("the ﬁsh ﬁns") == p.evaluate("the fish fins")
    plain = Pipeline.from_spec(spec, device="cpu").fit(files=corpus, out=tmp_path / "plain")
    assert plain.normalize is None and Pipeline.load(tmp_path / "plain").normalize is None


def test_warnings_point_at_the_callers_line():
    spec = {"cell": {"hidden_size": 8, "num_layers": 1}, "train": {"steps": 1}}
    pipe = Pipeline.from_spec(spec, device="cpu")
    with pytest.warns(UserWarning) as caught:
        pipe.fit("abc abc abc")  # too small: the splits and the batch shrink, with warnings
    assert len(caught) >= 2
    assert {Path(w.filename).resolve() for w in caught} == {Path(__file__).resolve()}
    with pytest.warns(UserWarning, match="nothing to train") as caught:
        pipe.fit("abc abc abc")  # already at train.steps
    with pytest.warns(UserWarning, match="is deterministic") as more:
        pipe.generate("a", 3, sampler="greedy", num_samples=2)
    assert {Path(w.filename).resolve() for w in [*caught, *more]} == {Path(__file__).resolve()}


def test_the_old_names_step_and_result_still_work_and_warn(trained):
    with pytest.warns(DeprecationWarning, match=r"Pipeline\.step is deprecated") as caught:
        assert trained.step == trained.steps_trained > 0
    with pytest.warns(DeprecationWarning, match=r"Pipeline\.result is deprecated"):
        assert trained.result is trained.last_run is not None
    assert Path(caught[0].filename).resolve() == Path(__file__).resolve()
    pipe = Pipeline.from_spec(SMALL, device="cpu")
    with pytest.warns(DeprecationWarning, match="use Pipeline.steps_trained"):
        pipe.step = 3  # the old name writes the new attribute
    assert pipe.steps_trained == 3
