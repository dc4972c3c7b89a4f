"""Checkpoints: atomic directories of safetensors + JSON, exact-resume state, a run's store."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn

from charseq.checkpoint import (
    CheckpointError,
    CheckpointStore,
    capture_rng,
    copy_checkpoint,
    generator_state,
    load_checkpoint,
    optimizer_state_from_tensors,
    optimizer_state_to_tensors,
    read_manifest,
    read_tensors,
    read_weights,
    resolve_checkpoint,
    restore_generator,
    restore_rng,
    state_from_tensors,
    state_to_tensors,
    tensor_names,
    write_checkpoint,
)

ROOT = Path(__file__).resolve().parents[1]


def tensors_for(step: int) -> dict[str, dict[str, torch.Tensor]]:
    return {
        "model": {"w": torch.full((64,), float(step)), "b": torch.arange(3) + step},
        "state": {"step": torch.tensor(step)},
    }


def assert_same(a, b, path="$"):
    """Equal values of equal types, recursively; tensors by dtype, shape and every bit."""
    if not (isinstance(a, dict) and isinstance(b, dict)):  # state_dict() is an OrderedDict
        assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert (a.dtype, a.shape) == (b.dtype, b.shape), path
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert set(a) == set(b), path  # safetensors files keep no key order
        for key in a:
            assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), path
    else:
        assert a == b, path


def assert_loads_fully(path: Path) -> dict:
    """The checkpoint loads, every file verifies, and its tensors are those of its step."""
    manifest, tensors = load_checkpoint(path)
    step = manifest["step"]
    assert_same(tensors, tensors_for(step))
    return manifest


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# -- one checkpoint ---------------------------------------------------------------------------


def test_round_trip_of_several_files_keeps_dtypes_and_the_manifest(tmp_path):
    tensors = {
        "model": {
            "w": torch.randn(3, 4),
            "half": torch.randn(5).to(torch.float16),
            "bf16": torch.randn(5).to(torch.bfloat16),
            "double": torch.randn(2, dtype=torch.float64),
        },
        "optimizer": {
            "step": torch.tensor(7.0),
            "ids": torch.arange(4),
            "u8": torch.ones(2).byte(),
        },
        "state": {"mask": torch.tensor([True, False]), "empty": torch.zeros(0, 3)},
    }
    manifest = {"step": 12, "spec": {"cell": {"name": "gru"}}, "format": "overridden"}
    path = write_checkpoint(tmp_path / "ckpt", tensors, manifest)
    assert sorted(p.name for p in path.iterdir()) == [
        "manifest.json",
        "model.safetensors",
        "optimizer.safetensors",
        "state.safetensors",
    ]
    read = read_manifest(path)
    assert read["format"] == "charseq-checkpoint" and read["format_version"] == 1
    assert read["step"] == 12 and read["spec"] == {"cell": {"name": "gru"}}
    assert [f["name"] for f in read["files"]] == [f"{n}.safetensors" for n in tensors]
    assert tensor_names(read) == ["model", "optimizer", "state"]
    assert read["files"][0]["bytes"] == (path / "model.safetensors").stat().st_size
    loaded_manifest, loaded = load_checkpoint(path)
    assert loaded_manifest == read
    assert_same(loaded, tensors)
    assert_same(read_weights(path)["w"], tensors["model"]["w"])
    assert leftovers(tmp_path) == []


def test_a_module_is_shorthand_for_its_state_dict_and_tied_weights_are_stored(tmp_path):
    model = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 5))
    model[1].weight = model[0].weight  # tied: two names, one storage
    write_checkpoint(tmp_path / "ckpt", model, {})
    weights = read_weights(tmp_path / "ckpt")
    assert set(weights) == set(model.state_dict())
    assert torch.equal(weights["0.weight"], weights["1.weight"])
    fresh = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 5))
    fresh.load_state_dict(weights)
    assert torch.equal(fresh[1].bias, model[1].bias)


def test_tensors_are_moved_to_the_cpu_on_save_and_load_on_the_cpu(tmp_path):
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        w = torch.randn(4, 4, device=device, requires_grad=True)
        write_checkpoint(tmp_path / device, {"model": {"w": w}}, {})
        loaded = read_weights(tmp_path / device)["w"]
        assert loaded.device.type == "cpu" and not loaded.requires_grad
        assert torch.equal(loaded, w.detach().cpu())


def test_rewriting_replaces_a_checkpoint_and_refuses_anything_else(tmp_path):
    path = write_checkpoint(tmp_path / "ckpt", tensors_for(1), {"step": 1})
    write_checkpoint(path, tensors_for(2), {"step": 2})
    assert assert_loads_fully(path)["step"] == 2
    assert leftovers(tmp_path) == []
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.txt").write_text("precious")
    (tmp_path / "file").write_text("also precious")
    for target in ("notes", "file"):
        with pytest.raises(CheckpointError, match="not a charseq checkpoint; refusing"):
            write_checkpoint(tmp_path / target, tensors_for(1), {})
    assert (tmp_path / "notes" / "thesis.txt").read_text() == "precious"
    assert (tmp_path / "file").read_text() == "also precious"
    with pytest.raises(TypeError):
        write_checkpoint(tmp_path / "x", tensors_for(1), {"bad": object()})
    with pytest.raises(ValueError, match="invalid checkpoint file name"):
        write_checkpoint(tmp_path / "x", {"../model": {}}, {})
    assert not (tmp_path / "x").exists() and leftovers(tmp_path) == []


def test_copy_checkpoint_is_independent_of_its_source(tmp_path):
    source = write_checkpoint(tmp_path / "a", tensors_for(3), {"step": 3})
    copy = copy_checkpoint(source, tmp_path / "b")
    write_checkpoint(source, tensors_for(4), {"step": 4})
    assert assert_loads_fully(copy)["step"] == 3
    copy_checkpoint(source, copy)
    assert assert_loads_fully(copy)["step"] == 4


# -- bad input --------------------------------------------------------------------------------


def test_corrupt_truncated_foreign_and_newer_checkpoints_give_specific_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        read_manifest(tmp_path / "nowhere")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "weights.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(CheckpointError, match=r"not a charseq checkpoint \(no manifest.json\)"):
        read_manifest(tmp_path / "foreign")
    (tmp_path / "foreign" / "manifest.json").write_text('{"format": "someone-else"}')
    with pytest.raises(CheckpointError, match="not a charseq checkpoint manifest"):
        read_manifest(tmp_path / "foreign")
    (tmp_path / "foreign" / "manifest.json").write_text('{"format": "charseq-checkpo')
    with pytest.raises(CheckpointError, match=r"unreadable manifest \(corrupt or truncated\)"):
        read_manifest(tmp_path / "foreign")

    def written(name: str) -> tuple[Path, dict]:
        path = write_checkpoint(tmp_path / name, tensors_for(1), {"step": 1})
        return path, json.loads((path / "manifest.json").read_text())

    path, manifest = written("newer")
    (path / "manifest.json").write_text(json.dumps({**manifest, "format_version": 2}))
    with pytest.raises(CheckpointError, match="format version 2 is newer than this charseq reads"):
        read_manifest(path)
    (path / "manifest.json").write_text(json.dumps({**manifest, "format_version": "1"}))
    with pytest.raises(CheckpointError, match="invalid format_version '1'"):
        read_manifest(path)

    path, manifest = written("escape")
    manifest["files"][0]["name"] = "../escape.safetensors"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="malformed manifest: 'files'"):
        read_manifest(path)

    path, _ = written("truncated")
    (path / "state.safetensors").unlink()
    with pytest.raises(CheckpointError, match="truncated checkpoint: missing state.safetensors"):
        read_manifest(path)

    path, _ = written("flipped")
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF  # same size, one bit pattern changed in the tensor data
    (path / "model.safetensors").write_bytes(bytes(data))
    read_manifest(path)  # the manifest is fine; the damage shows when the tensors are read
    with pytest.raises(CheckpointError, match=r"unreadable weights: SHA-256 mismatch"):
        read_weights(path)

    path, _ = written("short")
    (path / "state.safetensors").write_bytes((path / "state.safetensors").read_bytes()[:-4])
    with pytest.raises(CheckpointError, match=r"unreadable 'state' tensors: .* \(truncated or"):
        read_tensors(path, "state")

    path, manifest = written("garbage")  # a file that matches its manifest but is not safetensors
    garbage = b"\x80\x04\x95not a safetensors file"
    (path / "model.safetensors").write_bytes(garbage)
    manifest["files"][0].update(bytes=len(garbage), sha256=hashlib.sha256(garbage).hexdigest())
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="unreadable weights"):
        read_weights(path)
    with pytest.raises(CheckpointError, match=r"has no 'optimizer' tensors \(it has: model, st"):
        read_tensors(path, "optimizer")


# -- crashes during a save --------------------------------------------------------------------


def test_a_crash_while_writing_tensors_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path / "run")
    store.save(1, tensors_for(1), {"step": 1}, metric=1.0)
    index = (tmp_path / "run" / "latest.json").read_bytes()
    real = safetensors.torch.save_file
    calls = []

    def half_then_disk_full(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 1:
            return real(tensors, filename, metadata=metadata)
        Path(filename).write_bytes(b"{partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", half_then_disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.save(2, tensors_for(2), {"step": 2}, metric=0.5)
    monkeypatch.undo()
    assert len(calls) == 2
    assert (tmp_path / "run" / "latest.json").read_bytes() == index
    assert store.latest() == store.best() == tmp_path / "run" / "step-00000001"
    assert assert_loads_fully(store.latest())["step"] == 1
    assert [p.name for p in store.checkpoints()] == ["step-00000001"]
    assert leftovers(tmp_path / "run") == []


@pytest.mark.parametrize("failing_call", range(5))
def test_a_failed_rename_at_any_point_leaves_loadable_checkpoints(
    tmp_path, monkeypatch, failing_call
):
    # save(2) renames: 0 staging -> step-2, 1 latest.json, 2 best -> aside, 3 staging -> best,
    # 4 step-1 -> trash (pruned: keep_last=1 and step 2 is the new best)
    run = tmp_path / "run"
    store = CheckpointStore(run, keep_last=1)
    store.save(1, tensors_for(1), {"step": 1}, metric=1.0)
    real, calls = os.replace, []

    def flaky(src, dst):
        calls.append((src, dst))
        if len(calls) == failing_call + 1:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError, match="No space left"):
        store.save(2, tensors_for(2), {"step": 2}, metric=0.5)
    monkeypatch.undo()
    assert leftovers(run) == []
    latest, best = store.latest(), store.best()
    assert latest == best
    assert assert_loads_fully(latest)["step"] == (1 if failing_call < 2 else 2)
    assert assert_loads_fully(run / "best")["step"] in (1, 2)
    for path in store.checkpoints():
        assert_loads_fully(path)
    store.save(3, tensors_for(3), {"step": 3}, metric=0.7)  # better than 1.0, worse than 0.5
    best = 2 if failing_call >= 2 else 3  # did latest.json record step 2 as the best?
    assert assert_loads_fully(run / "best")["step"] == best
    assert [int(p.name[5:]) for p in store.checkpoints()] == sorted({best, 3})
    assert leftovers(run) == []


def test_a_save_killed_between_the_two_renames_is_recovered(tmp_path):
    run = tmp_path / "run"
    store = CheckpointStore(run)
    store.save(1, tensors_for(1), {"step": 1}, metric=1.0)
    # what a process killed inside _swap_into_place leaves: best/ moved aside, staging complete
    aside = run / ".best.old-abc123"
    aside.mkdir()
    os.replace(run / "best", aside / "previous")
    (run / ".best.tmp-def456").mkdir()
    with pytest.raises(CheckpointError, match="interrupted save left its previous version"):
        read_manifest(run / "best")
    store.save(2, tensors_for(2), {"step": 2}, metric=2.0)  # not better: best/ is step 1 again
    assert assert_loads_fully(run / "best")["step"] == 1
    assert leftovers(run) == []


KILLED_CHILD = """
import sys, torch
from charseq.checkpoint import CheckpointStore
store = CheckpointStore(sys.argv[1], keep_last=2)
step = 0
while True:
    step += 1
    tensors = {
        "model": {"w": torch.full((64,), float(step)), "b": torch.arange(3) + step},
        "state": {"step": torch.tensor(step)},
        "padding": {"x": torch.zeros(100_000)},  # a bigger file: more time spent mid-write
    }
    store.save(step, tensors, {"step": step}, metric=float((step * 7919) % 13))
    if step == 1:
        print("ready", flush=True)
        sys.stdin.readline()  # wait for "go", so that one child at a time keeps saving
"""


def test_a_process_killed_during_saves_leaves_every_named_checkpoint_whole(tmp_path):
    rng = random.Random(20240601)
    runs = [tmp_path / f"run{i}" for i in range(3)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", KILLED_CHILD, str(run)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for run in runs
    ]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "ready"
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
            time.sleep(rng.uniform(0.02, 0.4))
            child.kill()  # SIGKILL: no cleanup runs
    finally:
        for child in children:
            child.kill()
            child.wait()
            child.stdin.close()
            child.stdout.close()
    for run in runs:
        store = CheckpointStore(run, keep_last=2)
        index = json.loads((run / "latest.json").read_text())
        latest = store.latest()
        assert latest.name == index["latest"]
        assert read_manifest(latest)["step"] == int(latest.name[5:])
        for path in [latest, store.best(), *store.checkpoints()]:
            manifest, tensors = load_checkpoint(path)
            step = manifest["step"]
            assert path.name == f"step-{step:08d}"
            assert_same(tensors["model"], tensors_for(step)["model"])
            assert_same(tensors["state"], tensors_for(step)["state"])
        if (run / "best").exists():
            load_checkpoint(run / "best")
        step = int(latest.name[5:]) + 1  # a resumed run cleans up what the killed one left
        store.save(step, tensors_for(step), {"step": step}, metric=-1.0)
        assert leftovers(run) == []
        assert assert_loads_fully(run / "best")["step"] == step


# -- the store --------------------------------------------------------------------------------


def test_keep_last_prunes_old_checkpoints_but_keeps_the_best_and_the_latest(tmp_path):
    run = tmp_path / "run"
    store = CheckpointStore(run, keep_last=2)
    assert store.latest() is None and store.best() is None and store.checkpoints() == []
    metrics = {1: 3.0, 2: 1.0, 3: 2.0, 4: None, 5: float("nan"), 6: 1.5}
    for step, metric in metrics.items():
        path = store.save(step, tensors_for(step), {"step": step}, metric=metric)
        assert path == run / f"step-{step:08d}"
    assert [p.name for p in store.checkpoints()] == [
        "step-00000002",
        "step-00000005",
        "step-00000006",
    ]
    assert store.latest() == run / "step-00000006" and store.best() == run / "step-00000002"
    assert store.best_metric() == 1.0
    assert json.loads((run / "latest.json").read_text()) == {
        "latest": "step-00000006",
        "best": "step-00000002",
        "best_metric": 1.0,
    }
    assert assert_loads_fully(run / "best")["step"] == 2
    assert sorted(p.name for p in run.iterdir()) == [
        "best", "latest.json", "step-00000002", "step-00000005", "step-00000006",
    ]  # fmt: skip
    store.save(7, tensors_for(7), {"step": 7}, metric=0.5)
    assert [p.name for p in store.checkpoints()] == ["step-00000006", "step-00000007"]
    assert assert_loads_fully(run / "best")["step"] == 7

    higher = CheckpointStore(tmp_path / "acc", keep_last=1)
    for step, metric in [(1, 0.2), (2, 0.9), (3, 0.4)]:
        higher.save(step, tensors_for(step), {"step": step}, metric=metric, lower_is_better=False)
    assert higher.best().name == "step-00000002" and higher.best_metric() == 0.9
    assert [p.name for p in higher.checkpoints()] == ["step-00000002", "step-00000003"]
    with pytest.raises(ValueError, match="keep_last must be at least 1"):
        CheckpointStore(run, keep_last=0)


def test_resolve_checkpoint_takes_a_checkpoint_or_a_run_directory(tmp_path):
    run = tmp_path / "run"
    store = CheckpointStore(run)
    for step in (1, 2):
        store.save(step, tensors_for(step), {"step": step})
    assert resolve_checkpoint(run) == run / "step-00000002"
    assert resolve_checkpoint(run / "latest.json") == run / "step-00000002"
    assert resolve_checkpoint(run / "step-00000001") == run / "step-00000001"
    assert resolve_checkpoint(run / "step-00000001" / "manifest.json") == run / "step-00000001"
    with pytest.raises(CheckpointError, match="no such checkpoint or run directory"):
        resolve_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"neither a checkpoint .* nor a run directory"):
        resolve_checkpoint(tmp_path / "empty")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(CheckpointError, match="is a file; give a checkpoint directory"):
        resolve_checkpoint(tmp_path / "file.txt")
    (run / "latest.json").write_text('{"latest": "step-00000009", "best": null}')
    with pytest.raises(CheckpointError, match="names step-00000009, which is missing"):
        resolve_checkpoint(run)
    (run / "latest.json").write_text('{"latest": "../../etc"}')
    with pytest.raises(CheckpointError, match="not a charseq latest.json"):
        resolve_checkpoint(run)
    (run / "latest.json").unlink()  # e.g. killed during the very first save: scan instead
    assert resolve_checkpoint(run) == run / "step-00000002"


# -- nested state, optimizers, RNG ------------------------------------------------------------


def json_round_trip(tensors, meta, tmp_path, name="state"):
    """Through a real checkpoint: safetensors for the tensors, the manifest for ``meta``."""
    path = write_checkpoint(tmp_path / name, {name: tensors}, {"meta": meta})
    return read_tensors(path, name), read_manifest(path)["meta"]


def test_nested_state_round_trips_exactly(tmp_path):
    state = {
        "cursor": 123,
        "epoch_done": False,
        "lr": 0.1,
        "odd": [float("nan"), float("inf"), -0.0, None, "text"],
        "hidden": (torch.randn(2, 3), torch.randn(2, 3).to(torch.float64)),
        "by_int": {0: torch.tensor(1.5), "0": torch.tensor(2.5), 3: {"__tensor__": "sneaky"}},
        "__dunder": [(1, 2), []],
        "empty": {},
    }
    tensors, meta = state_to_tensors(state)
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())
    assert "hidden.0" in tensors and len(tensors) == 4
    assert json.loads(json.dumps(meta, allow_nan=False)) == meta  # plain JSON only
    loaded_tensors, loaded_meta = json_round_trip(tensors, meta, tmp_path)
    assert_same(state_from_tensors(loaded_tensors, loaded_meta), state)
    with pytest.raises(TypeError, match="cannot store a device at hidden.1"):
        state_to_tensors({"hidden": [0, torch.device("cpu")]})
    with pytest.raises(CheckpointError, match="missing tensor 'gone'"):
        state_from_tensors({}, {"__tensor__": "gone"})


OPTIMIZERS = {
    "sgd-momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    "sgd-plain": lambda p: torch.optim.SGD(p, lr=0.1),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), amsgrad=True),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.95, momentum=0.5, centered=True),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=0.1),
}


def make_run(make_optimizer):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Dropout(0.3), nn.Linear(8, 3))
    optimizer = make_optimizer(model.parameters())
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    return model, optimizer, scheduler


def train(model, optimizer, scheduler, steps):
    for _ in range(steps):  # data and dropout both draw from the global RNGs
        x = torch.randn(5, 6) + float(np.random.rand()) + random.random()
        loss = model(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_resume_from_a_checkpoint_gives_bit_identical_weights(name, tmp_path):
    make_optimizer = OPTIMIZERS[name]
    random.seed(1), np.random.seed(1)
    model, optimizer, scheduler = make_run(make_optimizer)
    train(model, optimizer, scheduler, 6)
    straight = {k: v.clone() for k, v in model.state_dict().items()}

    random.seed(1), np.random.seed(1)
    model, optimizer, scheduler = make_run(make_optimizer)
    train(model, optimizer, scheduler, 3)
    opt_tensors, opt_meta = optimizer_state_to_tensors(optimizer.state_dict())
    sched_tensors, sched_meta = state_to_tensors(scheduler.state_dict())
    rng_tensors, rng_meta = capture_rng()
    write_checkpoint(
        tmp_path / "ckpt",
        {"model": model.state_dict(), "optimizer": opt_tensors, "rng": rng_tensors},
        {"optimizer": opt_meta, "scheduler": sched_meta, "rng": rng_meta},
    )
    assert not sched_tensors
    saved_state = optimizer.state_dict()
    del model, optimizer, scheduler
    torch.manual_seed(999), random.seed(999), np.random.seed(999)  # a fresh process, in effect

    manifest, tensors = load_checkpoint(tmp_path / "ckpt")
    model, optimizer, scheduler = make_run(make_optimizer)
    model.load_state_dict(tensors["model"])
    loaded_state = optimizer_state_from_tensors(tensors["optimizer"], manifest["optimizer"])
    assert_same(loaded_state, saved_state)
    optimizer.load_state_dict(loaded_state)
    scheduler.load_state_dict(state_from_tensors({}, manifest["scheduler"]))
    restore_rng(tensors["rng"], manifest["rng"])
    train(model, optimizer, scheduler, 3)
    assert_same(model.state_dict(), straight)


def test_restore_rng_continues_every_generator_exactly(tmp_path):
    random.gauss(0, 1), np.random.randn()  # leave cached Gaussians in both
    tensors, meta = capture_rng()
    assert json.loads(json.dumps(meta, allow_nan=False)) == meta

    def draw():
        return (
            [random.random(), random.gauss(0, 1)],
            np.random.randn(3).tolist(),
            torch.rand(4),
            torch.randint(0, 100, (3,)),
        )

    expected = draw()
    draw()
    tensors, meta = json_round_trip(tensors, meta, tmp_path, name="rng")
    restore_rng(tensors, meta)
    assert_same(draw(), expected)
    with pytest.raises(CheckpointError, match="RNG state is incomplete"):
        restore_rng({}, meta)

    generator = torch.Generator().manual_seed(5)
    state = generator_state(generator)
    first = torch.rand(3, generator=generator)
    restore_generator(torch.Generator(), state)
    assert torch.equal(torch.rand(3, generator=restore_generator(generator, state)), first)


def test_optimizer_state_must_look_like_one():
    with pytest.raises(TypeError, match="not an optimizer state_dict"):
        optimizer_state_to_tensors({"state": {}})
    with pytest.raises(CheckpointError, match="not an optimizer state_dict"):
        optimizer_state_from_tensors({}, {"state": {}})
