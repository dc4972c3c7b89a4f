"""The training loop: exact resume, run directories, early stopping, the divergence guard,
time budgets, schedules, callbacks and signals."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch

from charseq import Callback, Pipeline, PipelineSpec
from charseq.callbacks import MetricsLog, ProgressBar, SampleEvery
from charseq.corpus import split_ids
from charseq.errors import CharseqError
from charseq.schedules import lr_factor
from charseq.train import TrainingDiverged
from tests._helpers import assert_identical, weights

TEXT = "".join(f"line {i}: the quick brown fox {i % 7} jumps. " for i in range(300))


def spec(**train):
    return {
        "cell": {"name": "lstm", "hidden_size": 16, "num_layers": 2, "dropout": 0.2},
        "model": {"embedding_size": 8},
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"batch_size": 4, "seq_len": 16, "eval_every": 4, "steps": 8, **train},
    }


@pytest.mark.parametrize("batching", ["streams", "windows"])
def test_resume_is_bit_identical(tmp_path, batching):
    whole = Pipeline.from_spec(spec(batching=batching), device="cpu")
    whole.fit(TEXT, out=tmp_path / "whole")

    half = Pipeline.from_spec(spec(batching=batching, steps=4), device="cpu")
    half.fit(TEXT, out=tmp_path / "half")
    assert half.last_run.step == 4
    resumed = Pipeline.resume(tmp_path / "half", text=TEXT, steps=8, device="cpu")
    assert resumed.last_run.step == 8
    assert_identical(weights(whole), weights(resumed))


def test_resume_from_files_takes_the_corpus_from_the_runs_cache(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, "utf-8")
    whole = Pipeline.from_spec(spec(), device="cpu").fit(files=corpus, out=tmp_path / "whole")
    Pipeline.from_spec(spec(steps=4), device="cpu").fit(files=corpus, out=tmp_path / "half")
    corpus.write_text(TEXT + "more", "utf-8")  # not read: the run's cache has what it trained on
    resumed = Pipeline.resume(tmp_path / "half", steps=8, device="cpu")
    assert_identical(weights(whole), weights(resumed))
    with pytest.raises(CharseqError, match="the corpus changed since"):  # given: it must match
        Pipeline.resume(tmp_path / "half", files=corpus, steps=9, device="cpu")


def test_a_weights_only_checkpoint_cannot_be_resumed(tmp_path):
    pipe = Pipeline.from_spec(spec(steps=2), device="cpu").fit(TEXT)
    pipe.save(tmp_path / "weights")
    with pytest.raises(CharseqError, match="weights only"):
        Pipeline.resume(tmp_path / "weights", text=TEXT, steps=4)


def test_the_run_directory_keeps_the_last_k_and_the_best(tmp_path):
    pipe = Pipeline.from_spec(spec(steps=12, eval_every=2, keep_last=2), device="cpu")
    log = tmp_path / "logs" / "metrics.jsonl"  # the log makes its folder
    pipe.fit(TEXT, out=tmp_path / "run", callbacks=[MetricsLog(log)])
    latest = json.loads((tmp_path / "run" / "latest.json").read_text())
    assert latest["latest"] == "step-00000012"
    steps = sorted(p.name for p in (tmp_path / "run").glob("step-*"))
    assert steps[-2:] == ["step-00000010", "step-00000012"]
    assert len(steps) <= 3  # the last two, and the best if it is older
    best = Pipeline.load(tmp_path / "run" / "best")
    assert best.steps_trained in {int(s.split("-")[1]) for s in steps}
    manifest = json.loads((tmp_path / "run" / "step-00000012" / "manifest.json").read_text())
    assert manifest["corpus"]["bounds"]["val"][1] > manifest["corpus"]["bounds"]["val"][0]
    assert manifest["plugins"]["cell"]["name"] == "lstm" and manifest["trainer"]["step"] == 12
    lines = log.read_text().splitlines()
    events = [json.loads(line)["event"] for line in lines]
    assert events.count("step") == 12 and events.count("eval") == 6
    assert events.count("checkpoint") == 6
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # the given log replaces it


def test_a_run_directory_gets_a_metrics_log(tmp_path):
    pipe = Pipeline.from_spec(spec(steps=4, eval_every=2), device="cpu")
    pipe.fit(TEXT, out=tmp_path / "run")
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    events = [json.loads(line)["event"] for line in lines]
    assert events.count("step") == 4 and events.count("eval") == 2


def test_early_stopping_with_patience():
    # A learning rate too small to move any weight: val BPC cannot improve after the first eval.
    frozen = spec(steps=50, eval_every=1, patience=2)
    frozen["optimizer"] = {"name": "sgd", "lr": 1e-30}
    pipe = Pipeline.from_spec(frozen, device="cpu").fit(TEXT)
    assert (pipe.last_run.reason, pipe.last_run.step) == ("early stopping", 3)


def test_a_time_budget_stops_training():
    pipe = Pipeline.from_spec(spec(steps=10**6, max_seconds=0.5), device="cpu").fit(TEXT)
    assert pipe.last_run.reason == "time" and 0 < pipe.last_run.step < 10**6


class PoisonOnce(Callback):
    """Sets a weight to NaN once, as an exploding update would."""

    def __init__(self, at):
        self.at, self.messages = at, []

    def on_step_end(self, trainer, step, metrics):
        if step == self.at and not self.messages:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))

    def on_divergence(self, trainer, step, message):
        self.messages.append(message)


def test_the_divergence_guard_restores_and_lowers_the_rate():
    poison = PoisonOnce(at=6)
    pipe = Pipeline.from_spec(spec(steps=10), device="cpu").fit(TEXT, callbacks=[poison])
    [message] = poison.messages
    # poisoned after step 6, so step 7's loss is the one that diverges
    assert message.startswith("step 7: the loss diverged (nan); restored the state of step 4")
    assert "0.5x" in message
    assert pipe.last_run.step == 10
    assert all(torch.isfinite(p).all() for p in pipe.model.parameters())


def test_a_run_that_keeps_diverging_stops_with_advice():
    hopeless = spec(steps=30)
    hopeless["optimizer"] = {"name": "sgd", "lr": 1e12}
    with pytest.raises(TrainingDiverged, match="lower optimizer.lr"):
        Pipeline.from_spec(hopeless, device="cpu").fit(TEXT)


def test_an_update_that_overflows_float32_stops_with_advice():
    huge = spec(steps=3)
    huge["optimizer"] = {"name": "adam", "lr": 3e38}  # fits float32; lr / (1 - beta1) does not
    with pytest.raises(TrainingDiverged, match="step 1: the optimizer's update overflowed float32"):
        Pipeline.from_spec(huge, device="cpu").fit(TEXT)


@pytest.mark.parametrize("device", ["meta", "xla", "vulkan"])
def test_a_device_charseq_cannot_run_on_is_refused_up_front(device):
    with pytest.raises(CharseqError, match=f"device '{device}': charseq runs on cpu, cuda, mps"):
        Pipeline.from_spec(spec(), device=device)


def test_sampling_during_training_does_not_change_it():
    plain = Pipeline.from_spec(spec(), device="cpu").fit(TEXT)
    samples = []
    sampled = Pipeline.from_spec(spec(), device="cpu").fit(
        TEXT, callbacks=[SampleEvery(3, lambda step, text: samples.append((step, text)))]
    )
    assert [s for s, _ in samples] == [3, 6]
    assert_identical(weights(plain), weights(sampled))


def test_bf16_needs_cuda_and_says_so_before_reading_the_corpus(tmp_path):
    pipe = Pipeline.from_spec(spec(precision="bf16"), device="cpu")
    with pytest.raises(CharseqError, match="bf16' needs a CUDA device"):
        pipe.fit(TEXT)
    with pytest.raises(CharseqError, match="bf16' needs a CUDA device"):
        pipe.fit(files=tmp_path / "not-there.txt")  # the check comes first


def test_schedules():
    def train(**options):
        return PipelineSpec.from_dict({"train": {"steps": 100, **options}}).train

    constant = train()
    assert lr_factor(constant, 50, 3.0) == 1.0
    char_rnn = train(schedule="epoch-decay", decay_rate=0.97, decay_after_epochs=10)
    assert [lr_factor(char_rnn, 0, e) for e in (9.9, 10.0, 11.5)] == [1.0, 0.97, 0.97**2]
    torch_rnn = train(
        schedule="epoch-decay", decay_rate=0.5, decay_after_epochs=5, decay_every_epochs=5
    )
    assert [lr_factor(torch_rnn, 0, e) for e in (4.9, 5.0, 9.9, 10.0)] == [1, 0.5, 0.5, 0.25]
    cosine = train(schedule="cosine", warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(cosine, 0, 0) == pytest.approx(0.1)
    assert lr_factor(cosine, 9, 0) == pytest.approx(1.0)
    assert lr_factor(cosine, 55, 0) == pytest.approx(0.55)
    assert lr_factor(cosine, 100, 0) == pytest.approx(0.1)


def test_the_cosine_horizon_is_schedule_steps_or_steps():
    def train(**options):
        return PipelineSpec.from_dict({"train": {"schedule": "cosine", **options}}).train

    following = train(steps=20, min_lr_ratio=0.0)
    planned = train(steps=10, schedule_steps=20, min_lr_ratio=0.0)
    assert [lr_factor(planned, s, 0) for s in range(20)] == [
        lr_factor(following, s, 0) for s in range(20)
    ]
    assert lr_factor(following, 10, 0) == pytest.approx(0.5)


def test_a_run_trained_in_parts_follows_one_cosine_curve_when_told_its_total(tmp_path):
    """``train.schedule_steps`` makes 4 steps and a resume to 8 train exactly as 8 in one go;
    without it the resume stretches the curve to the new ``steps`` and says so."""
    cosine = {"schedule": "cosine", "warmup_steps": 1, "eval_every": 0}

    def losses(run):
        records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        return [record["loss"] for record in records if record["event"] == "step"]

    whole = Pipeline.from_spec(spec(**cosine), device="cpu")
    whole.fit(TEXT, out=tmp_path / "whole")
    planned = Pipeline.from_spec(spec(**cosine, steps=4, schedule_steps=8), device="cpu")
    planned.fit(TEXT, out=tmp_path / "planned")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing to say: the curve is the one planned
        resumed = Pipeline.resume(tmp_path / "planned", text=TEXT, steps=8, device="cpu")
    assert_identical(weights(whole), weights(resumed))
    assert losses(tmp_path / "planned") == losses(tmp_path / "whole")

    Pipeline.from_spec(spec(**cosine, steps=4), device="cpu").fit(TEXT, out=tmp_path / "part")
    with pytest.warns(UserWarning, match="now ends at step 8 .train.steps. instead of 4: from st"):
        Pipeline.resume(tmp_path / "part", text=TEXT, steps=8, device="cpu")
    assert losses(tmp_path / "part")[4:] != losses(tmp_path / "whole")[4:]


def test_the_learning_rate_follows_the_schedule():
    seen = []

    class Rates(Callback):
        def on_step_end(self, trainer, step, metrics):
            seen.append(metrics["lr"])

    cosine = spec(steps=6, schedule="cosine", warmup_steps=2, min_lr_ratio=0.0)
    Pipeline.from_spec(cosine, device="cpu").fit(TEXT, callbacks=[Rates()])
    expected = [0.005, 0.01] + [0.01 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert seen == pytest.approx(expected)


def test_ctrl_c_saves_a_checkpoint_and_resume_continues(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 4, "utf-8")
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "charseq",
        "train",
        "--data",
        str(corpus),
        "--out",
        str(run),
        "--no-progress",
        "--steps",
        "100000",
        "--set",
        "cell.hidden_size=16",
        "--set",
        "train.batch_size=4",
        "--set",
        "train.eval_every=50",
    ]
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (run / "latest.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (run / "latest.json").exists(), "the run wrote no checkpoint in 60 s"
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "(interrupted)" in err
    latest = json.loads((run / "latest.json").read_text())["latest"]
    step = int(latest.split("-")[1])
    assert 50 <= step < 100000
    resumed = Pipeline.resume(run, steps=step + 3, device="cpu")
    assert resumed.last_run.step == step + 3


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_a_second_ctrl_c_stops_at_once():
    from charseq.train import Trainer

    pipe = Pipeline.from_spec(spec(steps=10**6), device="cpu")
    pipe.tokenizer.fit(TEXT)
    pipe.model = pipe.build_model()
    splits = split_ids(np.array(pipe.tokenizer.encode(TEXT)), val=0.1, test=0.0)

    class Interrupt(Callback):
        def on_step_end(self, trainer, step, metrics):
            if step == 3:
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)

    trainer = Trainer(pipe, splits, callbacks=[Interrupt()], handle_signals=True)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_compiled_training_of_a_step_only_cell_matches_the_step_loop():
    """train.compile runs torch.compile on the step loop; it must train the same model."""
    pytest.importorskip("torch._inductor")
    step_only = {
        "cell": {"name": "mgu", "hidden_size": 8, "num_layers": 1},  # the example plugin
        "model": {"embedding_size": 4},
        "optimizer": {"name": "sgd", "lr": 0.5},
        "train": {"batch_size": 2, "seq_len": 4, "steps": 3, "eval_every": 0},
    }
    runs = {}
    for compiled in (False, True):
        changes = {**step_only, "train": {**step_only["train"], "compile": compiled}}
        pipe = Pipeline.from_spec(changes, device="cpu")
        pipe.fit(TEXT[:400])
        assert pipe.last_run.step == 3
        runs[compiled] = weights(pipe)
    for name, eager in runs[False].items():
        torch.testing.assert_close(runs[True][name], eager, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("cell", "compiled"), [("lstm", False), ("mgu", True)])
def test_compile_applies_to_step_loops_only(cell, compiled):
    from charseq.train import Trainer

    pipe = Pipeline.from_spec(spec(compile=True), device="cpu")
    pipe.spec = pipe.spec.override({"cell.name": cell, "cell.dropout": 0.0})
    pipe.tokenizer.fit(TEXT)
    pipe.model = pipe.build_model()
    trainer = Trainer(pipe, split_ids(np.asarray(pipe.tokenizer.encode(TEXT)), 0.1, 0.0))
    # The built-in lstm runs one fused kernel already; the mgu plugin runs the step loop.
    assert (trainer.forward is not pipe.model) == compiled
    if compiled:
        assert isinstance(trainer.forward, torch._dynamo.eval_frame.OptimizedModule)
    # the progress bar says why the first step takes long, only when it will
    out = io.StringIO()
    bar = ProgressBar(file=out)
    bar.on_fit_start(trainer)
    bar.on_fit_end(trainer, 0, "done")
    assert ("train.compile: the first step compiles" in out.getvalue()) == compiled


def test_the_progress_bar_shows_the_last_evaluation_and_the_best():
    out = io.StringIO()
    bar = ProgressBar(file=out)
    pipe = Pipeline.from_spec(spec(steps=6), device="cpu")
    pipe.fit(TEXT, callbacks=[bar])
    assert bar.postfix["best_bpc"] == f"{pipe.last_run.best_val_bpc:.3f}"
    assert f"best_bpc={bar.postfix['best_bpc']}" in out.getvalue()  # shown after the last eval
    assert "val_loss=nan" not in out.getvalue() and "val_loss=-" not in out.getvalue()[-200:]


def test_the_progress_bar_shows_both_losses_in_one_unit():
    """Training and validation loss in nats per token, so that they compare at a glance."""
    evaluations = []

    class Record(Callback):
        def on_eval(self, trainer, step, metrics):
            evaluations.append(metrics)

    bar = ProgressBar(file=io.StringIO())
    Pipeline.from_spec(spec(steps=6), device="cpu").fit(TEXT, callbacks=[bar, Record()])
    last = evaluations[-1]
    assert bar.postfix["val_loss"] == f"{last['val_nats']:.3f}"  # nats, as the training loss
    assert float(bar.postfix["val_loss"]) == pytest.approx(last["val_bpc"] * math.log(2), abs=2e-3)
    assert bar.postfix["best_bpc"] == f"{last['best_val_bpc']:.3f}"


def test_a_callback_error_closes_the_progress_bar_and_reaches_the_caller():
    class Boom(Callback):
        def on_step_end(self, trainer, step, metrics):
            if step == 2:
                raise RuntimeError("boom")

    class Record(Callback):
        def __init__(self):
            self.seen = []

        def on_fit_end(self, trainer, step, reason):
            self.seen.append(("end", step))

        def on_exception(self, trainer, step, error):
            self.seen.append(("exception", step, str(error)))

    bar, record = ProgressBar(file=io.StringIO()), Record()
    pipe = Pipeline.from_spec(spec(steps=50), device="cpu")
    with pytest.raises(RuntimeError, match="boom"):
        pipe.fit(TEXT, callbacks=[bar, Boom(), record])
    assert record.seen == [("exception", 2, "boom")]  # not on_fit_end
    assert bar.bar.disable  # tqdm marks a closed bar disabled


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_signal_during_the_last_evaluation_still_ends_with_a_checkpoint(tmp_path):
    class SignalAtTheEnd(Callback):
        def on_eval(self, trainer, step, metrics):
            os.kill(os.getpid(), signal.SIGINT)  # during the evaluation after the last step

    def outside(signum, frame):  # what the process does with a signal training does not catch
        raise RuntimeError("the signal reached the process's own handler")

    pipe = Pipeline.from_spec(spec(steps=4, eval_every=0), device="cpu")
    previous = signal.signal(signal.SIGINT, outside)
    try:
        pipe.fit(TEXT, out=tmp_path / "run", callbacks=[SignalAtTheEnd()], handle_signals=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (pipe.last_run.step, pipe.last_run.reason) == (4, "interrupted")
    assert pipe.last_run.checkpoint.name == "step-00000004"
    assert Pipeline.load(tmp_path / "run").steps_trained == 4


def test_a_callback_can_stop_training_with_its_own_reason():
    class StopAtThree(Callback):
        def on_step_end(self, trainer, step, metrics):
            if step == 3:
                trainer.request_stop("enough")

    pipe = Pipeline.from_spec(spec(steps=50), device="cpu")
    pipe.fit(TEXT, callbacks=[StopAtThree()])
    assert (pipe.last_run.step, pipe.last_run.reason) == (3, "enough")
