"""What a user's mistakes do: a clear, specific error, and nothing already written is lost."""

from __future__ import annotations

import json
import shutil
import warnings

import attrs
import pytest
import torch

from charseq import Callback, Pipeline, PipelineSpec, SpecError
from charseq.checkpoint import CheckpointError
from charseq.errors import CharseqError
from charseq.evaluate import evaluate_checkpoint
from tests._helpers import SMALL, TEXT

RUN = {**SMALL, "train": {**SMALL["train"], "steps": 6, "eval_every": 3, "keep_last": 2}}


def _names(directory):
    return sorted(p.name for p in directory.iterdir())


def test_fit_refuses_a_directory_holding_a_run_and_leaves_it_as_it_was(tmp_path):
    out = tmp_path / "run"
    Pipeline.from_spec(RUN, device="cpu").fit(TEXT, out=out)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    latest = (out / "latest.json").read_text()
    other = {**RUN, "cell": {**RUN["cell"], "name": "gru"}}
    with pytest.raises(CheckpointError, match="already holds a run; continue it with Pipeline.re"):
        Pipeline.from_spec(other, device="cpu").fit(TEXT, out=out)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert (out / "latest.json").read_text() == latest


def test_fit_with_overwrite_replaces_a_run_but_never_a_directory_that_is_not_one(tmp_path):
    out = tmp_path / "run"
    Pipeline.from_spec(RUN, device="cpu").fit(TEXT, out=out)
    other = {**RUN, "cell": {**RUN["cell"], "name": "gru"}, "train": {**RUN["train"], "steps": 3}}
    Pipeline.from_spec(other, device="cpu").fit(TEXT, out=out, overwrite=True)
    assert _names(out) == [".charseq.lock", "best", "latest.json", "metrics.jsonl", "step-00000003"]
    assert Pipeline.load(out).spec.cell.name == "gru"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(CheckpointError, match="is not empty and is not a charseq run; choose"):
            Pipeline.from_spec(RUN, device="cpu").fit(TEXT, out=mine, overwrite=overwrite)
        assert (mine / "notes.txt").read_text() == "keep me"


def test_overwrite_puts_the_old_run_back_when_the_new_one_fails_to_start(tmp_path):
    out = tmp_path / "run"
    Pipeline.from_spec(RUN, device="cpu").fit(TEXT, out=out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(CharseqError, match="too few for a training part"):
        Pipeline.from_spec(RUN, device="cpu").fit("ab", out=out, overwrite=True)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing left aside
    Pipeline.from_spec(RUN, device="cpu").fit(TEXT, out=out, overwrite=True, steps=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the old run is gone now
    assert json.loads((out / "latest.json").read_text())["latest"] == "step-00000003"


def test_a_failed_start_leaves_no_run_behind_and_the_pipeline_as_it_was(tmp_path):
    out = tmp_path / "run"
    pipe = Pipeline.from_spec(RUN, device="cpu")
    with pytest.raises(CharseqError, match="too few for a training part"):
        pipe.fit("ab", out=out, steps=99)
    assert not out.exists()  # created by the call, removed with what it held
    assert not pipe.tokenizer.is_fitted and pipe.model is None
    assert pipe.spec.train.steps == RUN["train"]["steps"]
    pipe.fit(TEXT, out=out)  # the same pipeline and directory now work
    assert (out / "latest.json").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CharseqError, match="too few for a training part"):
        Pipeline.from_spec(RUN, device="cpu").fit("ab", out=empty)
    assert empty.is_dir() and _names(empty) == []  # it was there before: kept, emptied


def test_a_corpus_outside_a_fixed_vocabulary_says_where_the_vocabulary_came_from():
    pipe = Pipeline.from_spec(RUN, device="cpu").fit(TEXT)
    with pytest.raises(CharseqError, match="vocabulary was fixed before this fit") as error:
        pipe.fit("xyz " * 200)
    assert "'x'" in str(error.value)


def test_fit_warns_when_the_model_is_already_at_the_step_count_to_reach():
    pipe = Pipeline.from_spec(RUN, device="cpu").fit(TEXT)
    with pytest.warns(UserWarning, match="nothing to train: the model is at step 6 and train.st"):
        pipe.fit(TEXT)
    assert pipe.steps_trained == 6
    pipe.fit(TEXT, steps=8)
    assert pipe.steps_trained == 8


def test_save_never_replaces_a_training_checkpoint(tmp_path):
    out = tmp_path / "run"
    pipe = Pipeline.from_spec(RUN, device="cpu").fit(TEXT, out=out)
    manifest = (out / "best" / "manifest.json").read_text()
    other = Pipeline.from_spec({**RUN, "train": {**RUN["train"], "steps": 2}}, device="cpu")
    other.fit(TEXT)
    with pytest.raises(CheckpointError, match="is a training checkpoint .*save to another dir"):
        other.save(out / "best")
    assert (out / "best" / "manifest.json").read_text() == manifest
    assert Pipeline.resume(out / "best", text=TEXT, steps=7).steps_trained == 7
    export = pipe.save(tmp_path / "export")
    other.save(export)  # an earlier export is replaced
    assert json.loads((export / "manifest.json").read_text())["step"] == 2


def test_evaluating_an_export_asks_for_the_corpus_and_says_why(tmp_path):
    pipe = Pipeline.from_spec(RUN, device="cpu").fit(TEXT)
    export = pipe.save(tmp_path / "export")
    with pytest.raises(CheckpointError, match="records no corpus .*weights-only export"):
        evaluate_checkpoint(export)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    assert evaluate_checkpoint(export, files=[corpus], split="all")["tokens"] > 0


def test_spec_replace_validates_like_from_dict():
    spec = PipelineSpec.from_dict(RUN)
    longer = spec.replace(train=attrs.evolve(spec.train, steps=300))
    assert longer.train.steps == 300 and longer.cell == spec.cell
    assert spec.replace(train={"steps": 5}).train.steps == 5  # a table: others take defaults
    assert spec.replace(cell={"name": "gru"}).cell.name == "gru"
    with pytest.raises(SpecError, match="trian: unknown section; did you mean 'train'"):
        spec.replace(trian={"steps": 5})
    with pytest.raises(SpecError, match="train.steps: expected int, got str '5'"):
        spec.replace(train={"steps": "5"})
    with pytest.raises(ValueError, match="must be a number, got str '5'"):
        attrs.evolve(spec.train, steps="5")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"sampler": 3}, "sampler must be a name, a table with a name and options, or a Sampler"),
        ({"max_new_tokens": 10.0}, "max_new_tokens must be an int, got float 10.0"),
        ({"max_new_tokens": "10"}, "max_new_tokens must be an int, got str '10'"),
    ],
)
def test_generation_arguments_of_the_wrong_type(call, message):
    pipe = Pipeline.from_spec(RUN, device="cpu").fit(TEXT, steps=1)
    with pytest.raises(ValueError, match=message):
        pipe.generate(**{"prime": "the ", "max_new_tokens": 5, **call})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_a_device_this_machine_does_not_have_is_refused_up_front(tmp_path):
    with pytest.raises(CharseqError, match="device 'cuda' was asked for, but"):
        Pipeline.from_spec(RUN, device="cuda")
    export = Pipeline.from_spec(RUN, device="cpu").fit(TEXT, steps=1).save(tmp_path / "e")
    with pytest.raises(CharseqError, match="device 'cuda:0' was asked for, but"):
        Pipeline.load(export, device="cuda:0")
    with pytest.raises(CharseqError, match="unknown device 'gpu'"):
        Pipeline.from_spec(RUN, device="gpu")


@pytest.mark.parametrize("sampler", ["greedy", {"name": "beam", "num_beams": 2}])
def test_several_samples_of_a_deterministic_sampler_warn_that_they_are_identical(sampler):
    pipe = Pipeline.from_spec(RUN, device="cpu").fit(TEXT, steps=1)
    with pytest.warns(UserWarning, match="is deterministic: the 2 samples from one prime are"):
        texts = pipe.generate("the ", 5, sampler=sampler, num_samples=2)
    assert texts[0] == texts[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one sample, or a random sampler: no warning
        pipe.generate("the ", 5, sampler=sampler)
        pipe.generate("the ", 5, sampler="temperature", num_samples=2, seed=0)


def test_fit_takes_a_time_budget_like_resume():
    pipe = Pipeline.from_spec({**RUN, "train": {**RUN["train"], "steps": 10_000}}, device="cpu")
    pipe.fit(TEXT, max_seconds=0.5)
    assert pipe.last_run.reason == "time" and 0 < pipe.steps_trained < 10_000
    assert pipe.spec.train.max_seconds == 0.5


def test_an_unknown_split_is_named_before_the_checkpoint_is_read(tmp_path):
    with pytest.raises(CharseqError, match="unknown split 'dev'; splits: train, val, test, all"):
        evaluate_checkpoint(tmp_path / "no-such-run", split="dev")


def test_an_option_out_of_range_is_a_charseq_error():
    from charseq.builtins.cells import LSTMCell

    with pytest.raises(CharseqError, match="forget_bias"):
        LSTMCell(4, 8, forget_bias=1.0, bias=False)


def test_an_older_checkpoint_of_a_run_is_not_resumed_into_that_run(tmp_path):
    out = tmp_path / "run"
    Pipeline.from_spec({**RUN, "train": {**RUN["train"], "keep_last": 3}}, device="cpu").fit(
        TEXT, out=out
    )
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(CheckpointError, match="step 3, older than its run's latest checkpoint"):
        Pipeline.resume(out / "step-00000003", text=TEXT, steps=5)
    assert sorted(p.name for p in out.iterdir()) == before
    copy = tmp_path / "branch" / "step-00000003"
    shutil.copytree(out / "step-00000003", copy)  # a copy of its own resumes
    assert Pipeline.resume(copy, text=TEXT, steps=5).steps_trained == 5
    assert Pipeline.resume(out, text=TEXT, steps=8).steps_trained == 8  # and the run itself goes on


def test_overwrite_through_a_link_replaces_the_run_it_points_to(tmp_path):
    real = tmp_path / "big" / "run1"
    Pipeline.from_spec(RUN, device="cpu").fit(TEXT, out=real)
    link = tmp_path / "latest"
    link.symlink_to(real, target_is_directory=True)
    Pipeline.from_spec(RUN, device="cpu").fit(TEXT, out=link, overwrite=True, steps=3)
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert json.loads((real / "latest.json").read_text())["latest"] == "step-00000003"
    assert sorted(p.name for p in real.parent.iterdir()) == ["run1"]  # the old run is gone


def test_the_current_directory_is_never_replaced(tmp_path, monkeypatch):
    out = tmp_path / "run"
    Pipeline.from_spec(RUN, device="cpu").fit(TEXT, out=out)
    monkeypatch.chdir(out)
    with pytest.raises(CheckpointError, match="holds the current directory"):
        Pipeline.from_spec(RUN, device="cpu").fit(TEXT, out=".", overwrite=True)
    assert (out / "latest.json").is_file()


def test_a_replaced_run_that_cannot_be_put_back_is_kept_and_the_error_is_the_first(
    tmp_path, monkeypatch
):
    out = tmp_path / "run"
    Pipeline.from_spec(RUN, device="cpu").fit(TEXT, out=out)

    def fails(*_):
        raise OSError("device busy")

    monkeypatch.setattr("charseq.run_transaction.restore_run_dir", fails)
    with (
        pytest.warns(UserWarning, match="could not put the replaced run back"),
        pytest.raises(CharseqError, match="too few for a training part"),
    ):
        Pipeline.from_spec(RUN, device="cpu").fit("ab", out=out, overwrite=True)
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith(".run.replaced-")]
    assert (aside / "latest.json").is_file()  # the old run, intact, where the warning says


def test_a_failed_start_gives_back_the_callers_own_tokenizer():
    from charseq.builtins.tokenizers import CharTokenizer

    mine = CharTokenizer(unknown="skip")
    pipe = Pipeline(PipelineSpec.from_dict(RUN), mine, device="cpu")
    with pytest.raises(CharseqError, match="too few for a training part"):
        pipe.fit("ab")
    assert type(pipe.tokenizer) is CharTokenizer and pipe.tokenizer.unknown == "skip"
    assert not pipe.tokenizer.is_fitted


def _registry_with_extras():
    """The installed plugins plus an optimizer and a sampler that only this registry has."""
    import types

    import charseq
    from charseq.builtins.samplers import GreedySampler
    from charseq.registry import Registry

    extras = types.ModuleType("extras")

    @charseq.hookimpl
    def charseq_register_optimizers(registry):
        registry.add("plain-sgd", lambda parameters: torch.optim.SGD(parameters, lr=0.1))

    @charseq.hookimpl
    def charseq_register_samplers(registry):
        registry.add("my-greedy", GreedySampler)

    extras.charseq_register_optimizers = charseq_register_optimizers
    extras.charseq_register_samplers = charseq_register_samplers
    registry = Registry.load()
    registry.register(extras, "extras")
    return registry


def test_a_checkpoint_loads_without_its_optimizer_and_sampler_plugins_to_sample(tmp_path):
    spec = {**SMALL, "optimizer": "plain-sgd", "sampler": "my-greedy"}
    spec["train"] = {**SMALL["train"], "steps": 2}
    run = tmp_path / "run"
    Pipeline.from_spec(spec, registry=_registry_with_extras(), device="cpu").fit(TEXT, out=run)
    expected = "names optimizer 'plain-sgd' from <python> and sampler 'my-greedy' from <python>"
    with pytest.warns(UserWarning, match=expected):
        pipe = Pipeline.load(run, device="cpu")  # the default registry lacks both
    assert pipe.generate("the", 5, sampler="greedy")  # another sampler: fine
    with pytest.raises(CharseqError, match="loaded without sampler 'my-greedy'"):
        pipe.generate("the", 5)  # the checkpoint's own sampler: not here
    with pytest.raises(CharseqError, match="loaded without optimizer 'plain-sgd'.*to train"):
        pipe.fit(TEXT, steps=4)
    # a save keeps what the checkpoint recorded, not the defaults standing in
    saved = json.loads((pipe.save(tmp_path / "export") / "manifest.json").read_text())
    assert saved["spec"]["optimizer"]["name"] == "plain-sgd"
    assert saved["plugins"]["sampler"]["name"] == "my-greedy"
    assert Pipeline.load(
        tmp_path / "export", registry=_registry_with_extras()
    ).spec.sampler.name == ("my-greedy")
    # resuming trains: it needs every plugin
    with pytest.raises(CheckpointError, match="needs optimizer 'plain-sgd'"):
        Pipeline.resume(run, steps=4)
    # a spec changed to name another optimizer trains
    pipe.spec = pipe.spec.override({"optimizer.name": "sgd", "train.steps": 3})
    pipe.fit(TEXT)
    assert pipe.steps_trained == 3


def test_overwrite_refuses_a_run_holding_files_that_are_not_charseqs(tmp_path):
    out = tmp_path / "run"
    Pipeline.from_spec(RUN, device="cpu").fit(TEXT, out=out)
    (out / "notes.txt").write_text("mine")
    (out / "data").mkdir()
    before = _names(out)
    with pytest.raises(CheckpointError, match=r"also files that are not charseq's \(data, notes"):
        Pipeline.from_spec(RUN, device="cpu").fit(TEXT, out=out, overwrite=True)
    assert _names(out) == before and (out / "notes.txt").read_text() == "mine"


def test_what_a_run_left_before_its_first_checkpoint_is_replaced_only_with_overwrite(tmp_path):
    out = tmp_path / "run"
    (out / "cache").mkdir(parents=True)  # as a run killed before its first checkpoint leaves it
    (out / "cache" / ("0" * 32 + ".ids")).write_bytes(b"\x00\x01")
    (out / ".charseq.lock").write_text("")
    (out / "metrics.jsonl").write_text('{"event": "step", "step": 1}\n')
    with pytest.raises(CheckpointError, match="holds what a run left before its first checkpoint"):
        Pipeline.from_spec(RUN, device="cpu").fit(TEXT, out=out)
    Pipeline.from_spec(RUN, device="cpu").fit(TEXT, out=out, overwrite=True)
    assert Pipeline.load(out).steps_trained == RUN["train"]["steps"]
    assert '"step": 1}' not in (out / "metrics.jsonl").read_text()  # the old metrics went


def test_a_run_directory_another_process_trains_into_is_refused(tmp_path):
    from charseq.checkpoint import RunLock

    out = tmp_path / "run"
    Pipeline.from_spec(RUN, device="cpu").fit(TEXT, out=out)
    before = _names(out)
    with RunLock(out):  # as the other process holds it while it trains
        with pytest.raises(CheckpointError, match="another process is training into out"):
            Pipeline.from_spec(RUN, device="cpu").fit(TEXT, out=out, overwrite=True)
        with pytest.raises(CheckpointError, match="resume it once that process has finished"):
            Pipeline.resume(out, text=TEXT, steps=9)
        assert _names(out) == before
    Pipeline.resume(out, text=TEXT, steps=8)  # free again


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"train": {"seed": 10**23}}, "train.seed: must fit in 64 bits"),
        ({"cell": {"hidden_size": 10**23}}, "cell.hidden_size: must fit in 64 bits"),
        ({"optimizer": {"name": "adam", "lr": float("inf")}}, "must be a finite number, got inf"),
        ({"sampler": {"name": "beam", "length_penalty": float("nan")}}, "must be a finite number"),
    ],
)
def test_numbers_a_spec_cannot_mean_are_refused(data, message):
    with pytest.raises(SpecError, match=message):
        PipelineSpec.from_dict(data)


@pytest.mark.parametrize("seed", [-1, 1 << 63, 1.5, "1", True])
def test_a_generation_seed_is_an_int_as_train_seed_is(seed):
    pipe = Pipeline.from_spec(SMALL, device="cpu").fit(TEXT)
    with pytest.raises(CharseqError, match=r"seed must be an int in \[0, 2\*\*63\)"):
        pipe.generate("the", 5, seed=seed)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda pipe: pipe.score(None), "score needs a str, got NoneType"),
        (lambda pipe: pipe.score(b"the"), "score needs a str, got bytes"),
        (lambda pipe: pipe.score("the", top="3"), "top must be an int >= 0, got '3'"),
        (lambda pipe: pipe.score("the", top=-1), "top must be an int >= 0, got -1"),
        (lambda pipe: pipe.generate("the", 5, stop=5), "stop must be a str or a list of them"),
        (lambda pipe: Pipeline.load(None), "a checkpoint is named by a path"),
    ],
)
def test_api_arguments_of_the_wrong_kind_get_charseq_errors(call, message):
    pipe = Pipeline.from_spec(SMALL, device="cpu").fit(TEXT)
    with pytest.raises(CharseqError, match=message):
        call(pipe)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"step": "x"}, "step 'x' (an int >= 0 expected)"),
        ({"normalize": "NFX"}, "normalize 'NFX'"),
        ({"spec": None}, "no spec"),
    ],
)
def test_a_hand_edited_manifest_is_refused_by_name(tmp_path, edit, message):
    pipe = Pipeline.from_spec(SMALL, device="cpu").fit(TEXT)
    path = pipe.save(tmp_path / "export")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(edit)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="manifest is not a charseq pipeline's") as caught:
        Pipeline.load(path)
    assert message in str(caught.value)


def test_a_directory_whose_names_only_look_like_a_runs_is_not_replaced(tmp_path):
    other = tmp_path / "other-tool"
    (other / "best").mkdir(parents=True)
    (other / "best" / "model.bin").write_text("theirs")
    (other / "metrics.jsonl").write_text("{}\n")
    cached = tmp_path / "cached"
    (cached / "cache").mkdir(parents=True)
    (cached / "cache" / "notes.txt").write_text("theirs")
    unlocked = tmp_path / "unlocked"  # what a run leaves, but charseq locks before it writes
    (unlocked / "cache" / ".git").mkdir(parents=True)
    (unlocked / "cache" / ".git" / "config").write_text("theirs")
    (unlocked / "metrics.jsonl").write_text('{"epoch": 1, "acc": 0.93}\n')
    for out in (other, cached, unlocked):
        with pytest.raises(CheckpointError, match="is not empty and is not a charseq run"):
            Pipeline.from_spec(RUN, device="cpu").fit(TEXT, out=out, overwrite=True)
    assert (other / "best" / "model.bin").read_text() == "theirs"
    assert (cached / "cache" / "notes.txt").read_text() == "theirs"
    assert (unlocked / "cache" / ".git" / "config").read_text() == "theirs"


def test_a_file_system_without_locks_trains_unlocked_with_a_warning(tmp_path, monkeypatch):
    import errno

    fcntl = pytest.importorskip("fcntl")

    def no_locks(handle, operation):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.warns(UserWarning, match="this file system has no file locks"):
        Pipeline.from_spec(RUN, device="cpu").fit(TEXT, out=tmp_path / "run")
    assert Pipeline.load(tmp_path / "run").steps_trained == RUN["train"]["steps"]


def test_a_stand_in_with_a_changed_option_is_still_refused(tmp_path):
    spec = {**SMALL, "optimizer": "plain-sgd", "sampler": "my-greedy"}
    spec["train"] = {**SMALL["train"], "steps": 2}
    run = tmp_path / "run"
    Pipeline.from_spec(spec, registry=_registry_with_extras(), device="cpu").fit(TEXT, out=run)
    with pytest.warns(UserWarning, match="not installed here"):
        pipe = Pipeline.load(run, device="cpu")
    pipe.spec = pipe.spec.override({"optimizer.lr": 0.001, "sampler.temperature": 0.5})
    with pytest.raises(CharseqError, match="loaded without optimizer 'plain-sgd'"):
        pipe.fit(TEXT, steps=4)
    with pytest.raises(CharseqError, match="loaded without sampler 'my-greedy'"):
        pipe.generate("the", 5)
    assert pipe.steps_trained == 2


def test_sampling_during_training_with_an_absent_sampler_is_refused_before_training(tmp_path):
    from charseq.callbacks import SampleEvery

    spec = {**SMALL, "sampler": "my-greedy"}
    spec["train"] = {**SMALL["train"], "steps": 2}
    run = tmp_path / "run"
    Pipeline.from_spec(spec, registry=_registry_with_extras(), device="cpu").fit(TEXT, out=run)
    with pytest.warns(UserWarning, match="not installed here"):
        pipe = Pipeline.load(run, device="cpu")
    with pytest.raises(CharseqError, match="to sample during training"):
        pipe.fit(TEXT, steps=4, callbacks=[SampleEvery(1, lambda step, text: None)])
    assert pipe.steps_trained == 2
    pipe.fit(TEXT, steps=3, callbacks=[SampleEvery(1, lambda s, t: None, sampler="greedy")])
    assert pipe.steps_trained == 3


def test_an_interrupted_overwrite_keeps_the_run_it_replaced(tmp_path):
    class Interrupt(Callback):
        def on_step_end(self, trainer, step, metrics):
            if step == 2:
                trainer.request_stop("interrupted")  # what Ctrl-C does

    out = tmp_path / "run"
    Pipeline.from_spec(RUN, device="cpu").fit(TEXT, out=out)
    with pytest.warns(UserWarning, match="was interrupted, so the run it replaced is kept"):
        Pipeline.from_spec(RUN, device="cpu").fit(
            TEXT, out=out, overwrite=True, callbacks=[Interrupt()]
        )
    [kept] = [p for p in tmp_path.iterdir() if p.name.startswith(".run.replaced-")]
    assert Pipeline.load(kept).steps_trained == RUN["train"]["steps"]  # the old run, whole
    assert Pipeline.load(out).steps_trained == 2
