"""charseq.distributed: the torchrun environment, the World of one and of two processes (gloo on
the CPU, spawned by torch.multiprocessing), and sharing a batch's rows among the ranks."""

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from charseq import Callback, Pipeline, distributed
from charseq.batches import RandomWindows, StreamBatches
from charseq.corpus import split_ids
from charseq.distributed import SINGLE, DistributedError, World, detect, init, shard_rows
from charseq.errors import CharseqError
from charseq.train import Trainer
from charseq.train_state import check_world_size


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_env(rank: int, size: int, port: int) -> dict[str, str]:
    """The variables torchrun sets for ``rank`` of ``size`` on one machine."""
    return {
        "RANK": str(rank),
        "WORLD_SIZE": str(size),
        "LOCAL_RANK": str(rank),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }


def spawn(target, size: int, *args) -> None:
    """Run ``target(rank, size, port, *args)`` in ``size`` fresh processes and wait for them."""
    mp.spawn(target, args=(size, free_port(), *args), nprocs=size, join=True)


# -- one process ----------------------------------------------------------------------------------


def test_no_torchrun_environment_is_a_world_of_one():
    assert detect({}) is None
    assert init(environ={}) is SINGLE
    assert init(environ=torchrun_env(0, 1, 1234)) is SINGLE  # torchrun with one process
    assert SINGLE.is_main and not SINGLE.distributed
    SINGLE.barrier()
    assert SINGLE.all_reduce(1.5) == 1.5
    obj = {"stop": True}
    assert SINGLE.broadcast(obj) is obj


def test_detect_reads_torchrun_variables_and_checks_them():
    env = detect({"RANK": "1", "WORLD_SIZE": "4", "MASTER_PORT": "2000"})
    assert (env.rank, env.world_size, env.local_rank) == (1, 4, 1)
    assert (env.master_addr, env.master_port) == ("127.0.0.1", 2000)
    with pytest.raises(DistributedError, match="outside WORLD_SIZE=2"):
        detect({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(DistributedError, match="not a number"):
        detect({"RANK": "x", "WORLD_SIZE": "2"})


def test_the_backend_follows_the_device_unless_overridden(monkeypatch):
    monkeypatch.delenv(distributed.BACKEND_ENV, raising=False)
    assert distributed.default_backend("cpu") == "gloo"
    assert distributed.default_backend("cuda:1") == "nccl"
    assert distributed.default_backend("cuda", backend="gloo") == "gloo"
    monkeypatch.setenv(distributed.BACKEND_ENV, "gloo")
    assert distributed.default_backend("cuda") == "gloo"


def test_shard_rows_cut_the_global_batch_in_order():
    rows = [shard_rows(8, rank, 4) for rank in range(4)]
    assert rows == [slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 8)]
    assert shard_rows(5, 0, 1) == slice(0, 5)
    with pytest.raises(DistributedError, match="batch_size=6 .* multiple of 4; use 4 or 8"):
        shard_rows(6, 0, 4)
    with pytest.raises(DistributedError, match="batch_size=1 .* multiple of 2; use 2$"):
        shard_rows(1, 1, 2)
    with pytest.raises(DistributedError, match="outside"):
        shard_rows(4, 2, 2)


# -- two processes --------------------------------------------------------------------------------


def _collectives(rank: int, size: int, port: int, out: str) -> None:
    world = init("cpu", environ=torchrun_env(rank, size, port), timeout=60)
    try:
        result = {
            "repr": repr(world),
            "is_main": world.is_main,
            "mean": world.all_reduce(float(rank + 1)),  # (1 + 2) / 2
            "sum": world.all_reduce(float(rank + 1), "sum"),
            "max": world.all_reduce(float(rank), "max"),
            "object": world.broadcast({"from": rank, "text": "é"} if rank == 0 else None),
            "same_as_current": repr(distributed.current()) == repr(world),
        }
        world.barrier()
        Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        distributed.shutdown()


def test_two_processes_reduce_and_broadcast(tmp_path):
    spawn(_collectives, 2, str(tmp_path))
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for rank, result in enumerate(results):
        assert result["repr"] == f"World(rank={rank}, size=2, local_rank={rank})"
        assert result["is_main"] == (rank == 0)
        assert (result["mean"], result["sum"], result["max"]) == (1.5, 3.0, 1.0)
        assert result["object"] == {"from": 0, "text": "é"}
        assert result["same_as_current"]


# -- sharded batches ------------------------------------------------------------------------------


@pytest.mark.parametrize("batching", ["streams", "windows"])
def test_the_shards_of_a_batch_join_to_the_batch_of_one_process(batching):
    ids = np.arange(1000) % 97

    def batcher(shard=(0, 1)):
        if batching == "streams":
            return StreamBatches(ids, 8, 10, shard=shard)
        return RandomWindows(ids, 8, 10, seed=3, shard=shard)

    whole, shards = batcher(), [batcher((rank, 4)) for rank in range(4)]
    for _ in range(whole.steps_per_epoch + 2):  # past the end of a pass (a reset) and on
        batch, parts = whole.next(), [shard.next() for shard in shards]
        assert all(part.x.shape == (2, 10) for part in parts)
        assert torch.equal(torch.cat([part.x for part in parts]), batch.x)
        assert torch.equal(torch.cat([part.y for part in parts]), batch.y)
        assert all(part.reset == batch.reset for part in parts)
    assert all(shard.state_dict() == whole.state_dict() for shard in shards)


def test_a_batch_size_the_world_does_not_divide_is_refused():
    with pytest.raises(DistributedError, match="batch_size=6 .* multiple of 4"):
        StreamBatches(np.arange(1000), 6, 10, shard=(1, 4))
    with pytest.raises(DistributedError, match="batch_size=6 .* multiple of 4"):
        RandomWindows(np.arange(1000), 6, 10, shard=(1, 4))


# -- training on two processes --------------------------------------------------------------------

TRAIN_TEXT = "".join(f"line {i}: the quick brown fox {i % 7} jumps. " for i in range(300))


def train_spec(batching: str) -> dict:
    """A small LSTM, no dropout (each rank would draw its own masks), evaluated at step 10."""
    return {
        "cell": {"name": "lstm", "hidden_size": 16, "num_layers": 2},
        "model": {"embedding_size": 8},
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {
            "batch_size": 4, "seq_len": 16, "steps": 20, "eval_every": 10, "batching": batching,
        },
    }  # fmt: skip


class Losses(Callback):
    """Records the loss of every step and the validation BPC of every evaluation."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.val_bpc: list[float] = []

    def on_step_end(self, trainer, step, metrics):
        self.losses.append(metrics["loss"])

    def on_eval(self, trainer, step, metrics):
        self.val_bpc.append(metrics["val_bpc"])


def _fit(rank: int, size: int, port: int, out: str, batching: str) -> None:
    """Every rank calls fit with the same arguments, as under torchrun; the streams run trains
    on a file (rank 0 encodes it into the run's cache, rank 1 maps that), the windows run on a
    text. Each rank writes how many times it encoded a corpus file."""
    init("cpu", environ=torchrun_env(rank, size, port), timeout=60)
    try:
        encoded = count_encodings()
        record = Losses()
        pipe = Pipeline.from_spec(train_spec(batching), device="cpu")
        if batching == "streams":
            corpus = {"files": [Path(out, "corpus.txt")]}
        else:
            corpus = {"text": TRAIN_TEXT}
        pipe.fit(**corpus, out=Path(out, "run"), callbacks=[record])
        Path(out, f"encoded{rank}.json").write_text(json.dumps(len(encoded)))
        if rank == 0:
            assert record.losses, "rank 0 has the callbacks"
            result = {"losses": record.losses, "val_bpc": record.val_bpc}
            result["reason"] = pipe.last_run.reason
            Path(out, "result.json").write_text(json.dumps(result))
        else:
            assert not record.losses, "only rank 0 tells the callbacks"
    finally:
        distributed.shutdown()


def count_encodings() -> list[int]:
    """A list that grows by one each time this process encodes corpus files into a cache."""
    import charseq.corpus.training as training

    calls: list[int] = []
    prepare = training.prepare_corpus

    def counted(*args, **kwargs):
        calls.append(1)
        return prepare(*args, **kwargs)

    training.prepare_corpus = counted
    return calls


@pytest.mark.parametrize("batching", ["streams", "windows"])
def test_two_processes_train_as_one_does(tmp_path, monkeypatch, batching):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text(TRAIN_TEXT)
    record = Losses()
    one = Pipeline.from_spec(train_spec(batching), device="cpu")
    one.fit(TRAIN_TEXT, out=tmp_path / "one", callbacks=[record])

    spawn(_fit, 2, str(tmp_path), batching)
    two = json.loads((tmp_path / "result.json").read_text())
    assert len(two["losses"]) == len(record.losses) == 20
    np.testing.assert_allclose(two["losses"], record.losses, rtol=0, atol=1e-5)
    np.testing.assert_allclose(two["val_bpc"], record.val_bpc, rtol=0, atol=1e-5)
    assert two["reason"] == "steps"
    if batching == "streams":  # the files were encoded once, by rank 0, into the run's cache
        encoded = [json.loads((tmp_path / f"encoded{r}.json").read_text()) for r in range(2)]
        assert encoded == [1, 0]
        assert len(list((tmp_path / "run" / "cache").glob("*.ids"))) == 1

    # what rank 0 saved loads in one process, with the one-process run's weights, and samples
    loaded = Pipeline.load(tmp_path / "run", device="cpu")
    assert loaded.steps_trained == 20
    for name, tensor in one.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], tensor, rtol=0, atol=1e-4)
    assert len(loaded.generate("line", max_new_tokens=20, sampler={"name": "greedy"})) == 20

    # its checkpoints record the world size, and one process will not resume them
    manifest = json.loads((tmp_path / "run" / "best" / "manifest.json").read_text())
    assert manifest["trainer"]["world_size"] == 2
    message = "written by a run on 2 processes and this one has one process; .* --nproc 2"
    with pytest.raises(DistributedError, match=message):
        Pipeline.resume(tmp_path / "run", text=TRAIN_TEXT, steps=30, device="cpu")
    manifest = json.loads((tmp_path / "one" / "best" / "manifest.json").read_text())
    assert "world_size" not in manifest["trainer"]  # one process's checkpoints are as they were


def _refused(rank: int, size: int, port: int, out: str) -> None:
    """Every rank fits into a run directory that is not empty: rank 0 finds out, and every
    rank raises (none waits for the others); each writes its error."""
    init("cpu", environ=torchrun_env(rank, size, port), timeout=60)
    try:
        pipe = Pipeline.from_spec(train_spec("streams"), device="cpu")
        with pytest.raises(CharseqError) as raised:
            pipe.fit(TRAIN_TEXT, out=Path(out, "run"))
        Path(out, f"error{rank}.txt").write_text(f"{type(raised.value).__name__}: {raised.value}")
    finally:
        distributed.shutdown()


def test_what_rank_0_refuses_every_rank_refuses(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    spawn(_refused, 2, str(tmp_path))
    errors = [(tmp_path / f"error{r}.txt").read_text() for r in range(2)]
    assert "run" in errors[0] and "notes.txt" not in errors[1]
    assert errors[1].startswith("DistributedError: rank 0 could not prepare the run directory")
    assert errors[0].split(": ", 1)[1] in errors[1]  # rank 0's own message, passed on
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"  # nothing lost


def test_resuming_on_another_number_of_processes_is_refused():
    check_world_size("ckpt", {}, SINGLE)
    check_world_size("ckpt", {"world_size": 2}, World(1, 2))
    with pytest.raises(
        DistributedError,
        match=r"ckpt was written by a run on one process and "
        r"this one has 2 processes; resume it on one process \(without torchrun\)",
    ):
        check_world_size("ckpt", {}, World(0, 2))
    with pytest.raises(DistributedError, match="on 4 processes and this one has 2 processes"):
        check_world_size("ckpt", {"world_size": 4}, World(0, 2))


def _train_stop_resume(rank: int, size: int, port: int, out: str) -> None:
    """8 steps straight, and 4 steps then Pipeline.resume to 8, with dropout, every rank
    calling the same; rank 0 writes whether the two models are the same."""
    init("cpu", environ=torchrun_env(rank, size, port), timeout=60)
    try:
        spec = train_spec("streams")
        spec["cell"]["dropout"] = 0.2  # each rank draws its own masks from its own generator
        spec["train"] |= {"steps": 8, "eval_every": 4}
        whole = Pipeline.from_spec(spec, device="cpu").fit(TRAIN_TEXT, out=Path(out, "whole"))
        spec["train"]["steps"] = 4
        Pipeline.from_spec(spec, device="cpu").fit(TRAIN_TEXT, out=Path(out, "half"))
        pipe = Pipeline.resume(Path(out, "half"), text=TRAIN_TEXT, steps=8, device="cpu")
        if rank == 0:
            same = {
                name: torch.equal(tensor, pipe.model.state_dict()[name])
                for name, tensor in whole.model.state_dict().items()
            }
            result = {"step": pipe.steps_trained, "same": same}
            Path(out, "resume.json").write_text(json.dumps(result))
    finally:
        distributed.shutdown()


def test_two_processes_resume_exactly(tmp_path):
    spawn(_train_stop_resume, 2, str(tmp_path))
    result = json.loads((tmp_path / "resume.json").read_text())
    assert result["step"] == 8
    assert all(result["same"].values()), (
        f"differ: {[k for k, v in result['same'].items() if not v]}"
    )
    # the checkpoint holds the whole batch's carried state, as one process's would, and rank
    # 1's own RNG state (its dropout masks are not rank 0's)
    checkpoint = tmp_path / "half" / "step-00000004"
    hidden = load_file(checkpoint / "hidden.safetensors")
    assert hidden["layer0.0"].shape == (4, 16)
    rng = load_file(checkpoint / "rng.safetensors")
    assert not torch.equal(rng["torch"], rng["torch.rank1"])


class StopAt(Callback):
    """Asks the trainer to stop after step ``step``, giving ``reason``."""

    def __init__(self, step: int, reason: str) -> None:
        self.step, self.reason = step, reason

    def on_step_end(self, trainer, step, metrics):
        if step == self.step:
            trainer.request_stop(self.reason)


def _stop_on_rank_1(rank: int, size: int, port: int, out: str) -> None:
    world = init("cpu", environ=torchrun_env(rank, size, port), timeout=60)
    try:
        pipe = Pipeline.from_spec(train_spec("windows"), device="cpu")
        pipe.tokenizer = pipe.tokenizer.fit(TRAIN_TEXT)
        pipe.model = pipe.build_model()  # the same seed on every rank (DDP copies rank 0's too)
        splits = split_ids(np.asarray(pipe.tokenizer.encode(TRAIN_TEXT)), 0.1, 0.0)
        trainer = Trainer(pipe, splits, world=world)
        assert trainer.callbacks == []  # only rank 0 has callbacks: give rank 1 one by hand
        if rank == 1:
            trainer.callbacks.append(StopAt(3, "rank 1 asked"))
        result = trainer.run()
        Path(out, f"stop{rank}.json").write_text(json.dumps([result.step, result.reason]))
    finally:
        distributed.shutdown()


def test_a_stop_on_any_rank_stops_every_rank_at_the_same_step(tmp_path):
    spawn(_stop_on_rank_1, 2, str(tmp_path))
    for rank in range(2):
        step, reason = json.loads((tmp_path / f"stop{rank}.json").read_text())
        assert (step, reason) == (3, "rank 1 asked")
