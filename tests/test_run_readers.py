"""Readers and writers of one run directory: a reader gets one whole checkpoint while a process
trains into the run, the best survives any checkpoint cadence and any kill, and a resume does not
log the lost steps twice."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from charseq import Callback, Pipeline
from charseq.callbacks import truncate_metrics
from charseq.checkpoint import (
    CheckpointError,
    CheckpointStore,
    load_checkpoint,
    read_checkpoint,
)
from charseq.checkpoint.run import READ_ATTEMPTS
from charseq.evaluate import evaluate_checkpoint

TEXT = "".join(f"line {i}: the quick brown fox {i % 7} jumps. " for i in range(120))
SPEC = {
    "cell": {"name": "gru", "hidden_size": 8, "num_layers": 1},
    "model": {"embedding_size": 4},
    "train": {"batch_size": 2, "seq_len": 8, "steps": 2, "eval_every": 2, "keep_last": 1},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished tiny run (one checkpoint, step 2, also the best), trained from a file."""
    root = tmp_path_factory.mktemp("trained")
    (root / "corpus.txt").write_text(TEXT, "utf-8")
    Pipeline.from_spec(SPEC, device="cpu").fit(files=root / "corpus.txt", out=root / "run")
    return root / "run"


@pytest.fixture
def run(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


def save_next(run: Path, metric: float | None, *, step: int | None = None) -> int:
    """Save the next step of ``run`` as its trainer would: other weights, a later step."""
    store = CheckpointStore(run, keep_last=1)
    manifest, tensors = load_checkpoint(store.latest())
    step = manifest["step"] + 1 if step is None else step
    tensors["model"] = {k: v + step for k, v in tensors["model"].items()}
    store.save(step, tensors, {**manifest, "step": step}, metric=metric)
    return step


def assert_is_step(pipe: Pipeline, run: Path, step: int) -> None:
    """``pipe`` holds exactly the weights of ``run``'s checkpoint of ``step``."""
    assert pipe.steps_trained == step
    _, tensors = load_checkpoint(run / f"step-{step:08d}")
    loaded = pipe.model.state_dict()
    assert loaded.keys() == tensors["model"].keys()
    for name, tensor in tensors["model"].items():
        assert torch.equal(loaded[name], tensor), name


def on_first_read(monkeypatch, action, name: str = "model.safetensors") -> list[Path]:
    """Run ``action`` (a writer's save) just before the first read of a file called ``name``:
    after the reader has the manifest and before it has the tensors."""
    real, reads = Path.read_bytes, []

    def read_bytes(self):
        if self.name == name:
            reads.append(self)
            if len(reads) == 1:
                action()
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    return reads


# -- 1. readers during training ---------------------------------------------------------------


def test_a_run_whose_latest_is_pruned_while_it_is_read_loads_the_new_latest(run, monkeypatch):
    save_next(run, metric=None)  # step 3, the latest; step 2 stays the best
    on_first_read(monkeypatch, lambda: save_next(run, metric=None))  # 4; keep_last=1 prunes 3
    pipe = Pipeline.load(run)
    monkeypatch.undo()
    assert not (run / "step-00000003").exists()
    assert_is_step(pipe, run, 4)


def test_a_best_replaced_while_it_is_read_is_read_whole(run, monkeypatch):
    # the old manifest and the new tensors: once reported as a corrupt file
    on_first_read(monkeypatch, lambda: save_next(run, metric=-1.0))  # a new best
    pipe = Pipeline.load(run / "best")
    monkeypatch.undo()
    assert_is_step(pipe, run, 3)
    assert not (run / "step-00000002").exists()  # pruned: no longer the best


def test_a_best_being_swapped_is_read_from_the_step_latest_json_names(run, monkeypatch):
    real, loaded = os.replace, []

    def replace(src, dst):
        real(src, dst)
        if Path(src).name == "best" and not loaded:  # best/ moved aside, the new one not in
            assert not (run / "best").exists()
            loaded.append(Pipeline.load(run / "best"))

    monkeypatch.setattr(os, "replace", replace)
    save_next(run, metric=-1.0)
    monkeypatch.undo()
    assert_is_step(loaded[0], run, 3)


def test_evaluating_a_run_whose_latest_is_pruned_while_it_is_read(run, monkeypatch):
    save_next(run, metric=None)
    on_first_read(monkeypatch, lambda: save_next(run, metric=None))
    result = evaluate_checkpoint(run, split="val")
    monkeypatch.undo()
    assert result["step"] == 4 and result["checkpoint"] == str(run / "step-00000004")


def test_a_corrupt_file_is_still_reported_and_at_once(run, monkeypatch):
    model = run / "step-00000002" / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))
    reads = on_first_read(monkeypatch, lambda: None)
    with pytest.raises(CheckpointError, match="SHA-256 mismatch \\(corrupt file\\)"):
        Pipeline.load(run)
    assert len(reads) == 1  # nothing changed under the reader: no second try
    assert load_checkpoint(run / "best")[0]["step"] == 2  # best/ is a copy: a link to the same
    # bytes where the file system allows, so it is corrupt too; the message says which file
    with pytest.raises(CheckpointError, match="step-00000002/model.safetensors"):
        read_checkpoint(run)


def test_a_named_step_that_is_pruned_while_it_is_read_is_reported_missing(run, monkeypatch):
    on_first_read(monkeypatch, lambda: save_next(run, metric=-1.0))
    with pytest.raises(CheckpointError, match="step-00000002: no such checkpoint"):
        Pipeline.load(run / "step-00000002")  # the reader asked for that step, now gone


def test_a_reader_gives_up_on_a_run_that_changes_at_every_read(run, monkeypatch):
    save_next(run, metric=None)  # the latest is not the best: each save prunes it
    real, reads = Path.read_bytes, []

    def read_bytes(self):
        if self.name == "model.safetensors" and not saving:
            reads.append(self)
            saving.append(True)
            save_next(run, metric=None)
            saving.pop()
        return real(self)

    saving: list[bool] = []

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(CheckpointError, match=f"changed {READ_ATTEMPTS} times while being read"):
        read_checkpoint(run)
    assert len(reads) == READ_ATTEMPTS


def test_read_checkpoint_reads_the_named_files_or_all(run):
    path, manifest, tensors = read_checkpoint(run)
    assert path == run / "step-00000002" and manifest["step"] == 2
    assert sorted(tensors) == ["hidden", "model", "optimizer", "rng"]
    assert sorted(read_checkpoint(run / "best", ["rng"])[2]) == ["rng"]
    with pytest.raises(CheckpointError, match="a checkpoint is named by a path"):
        read_checkpoint(3)


# -- 2. checkpoint_every keeps the best -------------------------------------------------------


def best_of(run: Path) -> tuple[str | None, float | None]:
    index = json.loads((run / "latest.json").read_text())
    return index["best"], index["best_metric"]


def test_checkpoint_every_keeps_the_best(tmp_path):
    spec = {**SPEC, "train": {**SPEC["train"], "steps": 10, "eval_every": 4}}
    spec["train"].update(checkpoint_every=1, keep_last=1)
    pipe = Pipeline.from_spec(spec, device="cpu").fit(TEXT, out=tmp_path / "run")
    best, metric = best_of(tmp_path / "run")
    assert best is not None and metric == pipe.last_run.best_val_bpc
    assert int(best[5:]) in (4, 8, 10)  # an evaluated step
    loaded = Pipeline.load(tmp_path / "run" / "best")
    assert loaded.steps_trained == int(best[5:])
    assert_is_step(loaded, tmp_path / "run", loaded.steps_trained)
    steps = sorted(p.name for p in (tmp_path / "run").glob("step-*"))
    assert steps == sorted({best, "step-00000010"})


def test_a_run_stopped_after_a_checkpoint_every_save_records_its_last_evaluation(tmp_path):
    class StopAt5(Callback):
        def on_checkpoint(self, trainer, step, path):
            if step == 5:
                trainer.request_stop()

    spec = {**SPEC, "train": {**SPEC["train"], "steps": 10, "eval_every": 0}}
    spec["train"].update(checkpoint_every=1, keep_last=1)
    pipe = Pipeline.from_spec(spec, device="cpu")
    pipe.fit(TEXT, out=tmp_path / "run", callbacks=[StopAt5()])
    assert pipe.last_run.step == 5 and pipe.last_run.best_val_bpc is not None
    assert best_of(tmp_path / "run") == ("step-00000005", pipe.last_run.best_val_bpc)
    assert Pipeline.load(tmp_path / "run" / "best").steps_trained == 5


# -- 3. best/ after a kill at any point of a save ---------------------------------------------


class Killed(BaseException):
    """Stands in for SIGKILL: nothing runs after it, not even cleanup."""


def kill_at(monkeypatch, n: int) -> list:
    """Make the ``n``-th ``os.replace`` (from 0) raise :class:`Killed`, and every rename and
    deletion after it: a killed process does no cleanup."""
    real = {"replace": os.replace, "unlink": os.unlink, "rmtree": shutil.rmtree}
    calls = []

    def replace(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) > n:
            raise Killed
        return real["replace"](src, dst)

    def unless_killed(name):
        def call(*args, **kwargs):
            if len(calls) > n:
                raise Killed
            return real[name](*args, **kwargs)

        return call

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "unlink", unless_killed("unlink"))
    monkeypatch.setattr(shutil, "rmtree", unless_killed("rmtree"))
    return calls


def small(step: int) -> dict:
    return {"model": {"w": torch.full((8,), float(step))}}


def assert_run_reads_whole(run: Path) -> None:
    """Every reader finds a whole checkpoint: the run, its best, and each step directory."""
    index = json.loads((run / "latest.json").read_text())
    for path, expected in ((run, index["latest"]), (run / "best", index["best"])):
        directory, manifest, tensors = read_checkpoint(path)
        assert torch.equal(tensors["model"]["w"], small(manifest["step"])["model"]["w"])
        if path == run:  # the latest, or the version a killed rewrite of it kept aside
            assert manifest["step"] == int(expected[5:])
        else:  # best/, or the step latest.json names as the best
            assert manifest["step"] in (1, int(expected[5:]))
    for step in CheckpointStore(run).checkpoints():
        load_checkpoint(step)


# save(3) renames: staging -> step 3, latest.json, best -> aside, staging -> best, prune 1, 2
@pytest.mark.parametrize("n", range(7))
def test_a_save_killed_at_any_rename_leaves_a_readable_best(tmp_path, monkeypatch, n):
    run = tmp_path / "run"
    store = CheckpointStore(run, keep_last=1)
    store.save(1, small(1), {"step": 1}, metric=1.0)
    store.save(2, small(2), {"step": 2}, metric=2.0)
    calls = kill_at(monkeypatch, n)
    if n < 6:
        with pytest.raises(Killed):
            store.save(3, small(3), {"step": 3}, metric=0.5)
    else:
        store.save(3, small(3), {"step": 3}, metric=0.5)
    monkeypatch.undo()
    assert len(calls) == 6 if n == 6 else len(calls) > n
    assert_run_reads_whole(run)
    after = CheckpointStore(run, keep_last=1)  # the resumed run's next save
    after.save(4, small(4), {"step": 4}, metric=1.5)  # worse than 1 and 0.5
    best = 3 if n >= 2 else 1  # whether latest.json recorded step 3 as the best
    assert best_of(run)[0] == f"step-{best:08d}"
    assert load_checkpoint(run / "best")[0]["step"] == best  # on disk again
    assert_run_reads_whole(run)
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]


# the trainer rewrites its last step as the best: step 2 -> aside, staging -> step 2,
# latest.json, best -> aside, staging -> best, prune 1
@pytest.mark.parametrize("n", range(6))
def test_a_rewrite_of_the_latest_killed_at_any_rename_leaves_it_readable(tmp_path, monkeypatch, n):
    run = tmp_path / "run"
    store = CheckpointStore(run, keep_last=1)
    store.save(1, small(1), {"step": 1}, metric=1.0)
    store.save(2, small(2), {"step": 2})
    kill_at(monkeypatch, n)
    with pytest.raises(Killed):
        store.save(2, small(2), {"step": 2}, metric=0.5)
    monkeypatch.undo()
    assert_run_reads_whole(run)
    CheckpointStore(run, keep_last=1).save(3, small(3), {"step": 3}, metric=0.7)
    assert load_checkpoint(run / "best")[0]["step"] == (2 if n >= 3 else 3)
    assert_run_reads_whole(run)


# -- 4. a resume does not log the lost steps twice --------------------------------------------


def events(path: Path) -> list[tuple[str, int]]:
    records = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    return [(r["event"], r["step"]) for r in records]


def test_a_resume_cuts_the_metrics_back_to_its_checkpoint(tmp_path):
    spec = {**SPEC, "train": {**SPEC["train"], "steps": 8, "eval_every": 4}}
    Pipeline.from_spec(spec, device="cpu").fit(TEXT, out=tmp_path / "whole")

    class KillAt7(Callback):
        def on_step_end(self, trainer, step, metrics):
            if step == 7:
                raise Killed

    with pytest.raises(Killed):  # steps 5 and 6 were logged after the checkpoint of step 4
        Pipeline.from_spec(spec, device="cpu").fit(
            TEXT, out=tmp_path / "run", callbacks=[KillAt7()]
        )
    log = tmp_path / "run" / "metrics.jsonl"
    assert events(log)[-3:] == [("checkpoint", 4), ("step", 5), ("step", 6)]
    with log.open("a", encoding="utf-8") as file:
        file.write('{"event": "step", "st')  # and a line cut short by the kill
    Pipeline.resume(tmp_path / "run", text=TEXT, device="cpu")
    assert events(log) == events(tmp_path / "whole" / "metrics.jsonl")


def test_truncate_metrics_without_the_checkpoint_record(tmp_path):
    # a run killed between writing its checkpoint of step 2 and logging it
    lines = [
        {"event": "step", "step": 1},
        {"event": "step", "step": 2},
        {"event": "eval", "step": 2},
        {"event": "note"},
        {"event": "step", "step": 3},
    ]
    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(json.dumps(line) + "\n" for line in lines) + "not json\n")
    truncate_metrics(log, 2)
    kept = log.read_text().splitlines()
    assert [json.loads(line) for line in kept[:4]] == lines[:4] and kept[4:] == ["not json"]


def test_a_resume_after_a_rewrite_killed_between_its_renames(run, monkeypatch):
    # the trainer rewrites its last step as the best when a stop came after that step's
    # checkpoint_every save; killed with the step moved aside and its new version not in place
    store = CheckpointStore(run, keep_last=1)
    manifest, tensors = load_checkpoint(run / "step-00000002")
    kill_at(monkeypatch, 1)  # 0: step 2 -> aside; 1: staging -> step 2
    with pytest.raises(Killed):
        store.save(2, tensors, manifest, metric=0.5)
    monkeypatch.undo()
    assert not (run / "step-00000002").exists()
    assert Pipeline.load(run).steps_trained == 2  # readers read the version kept aside
    resumed = Pipeline.resume(run, steps=3, device="cpu")
    assert resumed.last_run.step == 3
    assert CheckpointStore(run).latest() == run / "step-00000003"
    assert not [p.name for p in run.iterdir() if p.name.startswith(".") and "lock" not in p.name]
