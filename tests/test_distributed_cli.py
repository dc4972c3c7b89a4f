"""``charseq train --nproc 2``: two processes launched as torchrun launches them, on the CPU
(gloo), stopped by SIGTERM or by a rank killed with SIGKILL, then resumed; as a user runs it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from charseq import Pipeline
from charseq.cli._launch import launch, train_arguments
from charseq.errors import CharseqError

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc for the ranks")

SMALL = [
    "--set", "cell.hidden_size=16", "--set", "model.embedding_size=8",
    "--set", "train.batch_size=4", "--set", "train.seq_len=16",
    "--set", "train.eval_every=25", "--no-progress",
]  # fmt: skip


def charseq(*args: str) -> list[str]:
    return [sys.executable, "-m", "charseq", *args]


def environment() -> dict[str, str]:
    return os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"line {i}: a quick brown fox {i % 7} jumps. " for i in range(2000)))
    return path


def start(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        charseq("train", "--nproc", "2", *args), cwd=tmp_path, env=environment(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        charseq("train", *args), cwd=tmp_path, env=environment(), capture_output=True,
        text=True, timeout=240,
    )  # fmt: skip


def wait_for_steps(run_dir: Path, steps: int, job: subprocess.Popen) -> None:
    """Wait until the run has a checkpoint and has logged ``steps`` steps."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert job.poll() is None, job.communicate()
        metrics = run_dir / "metrics.jsonl"
        lines = metrics.read_text().count('"loss"') if metrics.exists() else 0
        if (run_dir / "latest.json").exists() and lines >= steps:
            return
        time.sleep(0.2)
    raise AssertionError(f"{run_dir} did not reach step {steps}")


def latest_step(run_dir: Path) -> int:
    latest = json.loads((run_dir / "latest.json").read_text())["latest"]
    return int(latest.removeprefix("step-"))


def ranks(job: subprocess.Popen) -> dict[int, int]:
    """The launcher's ranks: LOCAL_RANK -> pid, read from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            if (
                not entry.name.isdigit()
                or int(entry.joinpath("stat").read_text().split()[3]) != job.pid
            ):
                continue
            environ = entry.joinpath("environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(b"LOCAL_RANK="):
                found[int(item.split(b"=")[1])] = int(entry.name)
    return found


def test_sigterm_stops_every_rank_with_a_checkpoint_and_resume_goes_on(tmp_path, corpus):
    job = start(tmp_path, "--data", corpus.name, "--out", "run", "--steps", "100000", *SMALL)
    wait_for_steps(tmp_path / "run", 30, job)
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=120)
    assert job.returncode == 130, err
    assert "SIGTERM passed on to every rank" in err
    stopped = latest_step(tmp_path / "run")
    assert f"stopped at step {stopped} (interrupted)" in err
    assert not ranks(job)  # no rank left behind

    # one process will not continue a run of two, and says how to
    alone = run(tmp_path, "--resume", "run", "--steps", str(stopped + 10))
    assert alone.returncode == 1 and "--nproc 2" in alone.stderr

    # two go on from the checkpoint the signal saved
    resumed = run(tmp_path, "--nproc", "2", "--resume", "run", "--steps", str(stopped + 10))
    assert resumed.returncode == 0, resumed.stderr
    assert f"stopped at step {stopped + 10} (steps)" in resumed.stderr
    assert Pipeline.load(tmp_path / "run", device="cpu").steps_trained == stopped + 10


def test_a_killed_rank_stops_the_job_and_resume_continues(tmp_path, corpus):
    job = start(tmp_path, "--data", corpus.name, "--out", "run", "--steps", "100000", *SMALL)
    wait_for_steps(tmp_path / "run", 60, job)

    # the run is locked: a second job may not write into it
    second = run(tmp_path, "--nproc", "2", "--resume", "run", "--steps", "100000")
    assert second.returncode == 1 and "another process is training" in second.stderr

    os.kill(ranks(job)[1], signal.SIGKILL)
    _, err = job.communicate(timeout=120)
    assert job.returncode == 1
    assert "rank 1 of 2 failed (SIGKILL)" in err
    assert "lost contact with the other processes" in err  # rank 0's own message
    assert not ranks(job)

    # nothing corrupt: every checkpoint loads, and the run resumes from its latest
    for checkpoint in (tmp_path / "run").glob("step-*"):
        Pipeline.load(checkpoint, device="cpu")
    step = latest_step(tmp_path / "run")
    resumed = run(tmp_path, "--nproc", "2", "--resume", "run", "--steps", str(step + 5))
    assert resumed.returncode == 0, resumed.stderr
    assert f"stopped at step {step + 5} (steps)" in resumed.stderr


def test_nproc_runs_the_command_as_typed_without_itself():
    argv = ["train", "--data", "a.txt", "--nproc", "2", "--steps", "5", "--nproc=3"]
    assert train_arguments(argv) == ["--data", "a.txt", "--steps", "5"]
    with pytest.raises(CharseqError, match="charseq train"):
        train_arguments(["--nproc", "2"])


def test_what_several_processes_cannot_do_is_refused_up_front(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from charseq.cli import cli
    from charseq.distributed import World

    with pytest.raises(CharseqError, match="--nproc must be at least 1, got 0"):
        launch(0, ["train"])
    runner = CliRunner()
    # rank 0 of a torchrun job of 2 (the process group stood in for): standard input reaches
    # one process, and a classifier trains on one
    monkeypatch.setattr("charseq.cli.train.distributed.init", lambda device: World(0, 2))
    done = runner.invoke(cli, ["train", "--data", "-", "--out", str(tmp_path / "run")])
    assert done.exit_code == 1 and "standard input) reaches one process" in done.stderr
    monkeypatch.setattr("charseq.pipeline.distributed.init", lambda device: World(0, 2))
    labelled = tmp_path / "labelled.tsv"
    labelled.write_text("text\tlabel\nab\tx\ncd\ty\n")
    pipe = Pipeline.from_spec({"task": {"name": "classify"}}, device="cpu")
    with pytest.raises(CharseqError, match="a classifier trains on one process; this is rank 0"):
        pipe.fit(data=labelled, out=tmp_path / "cls")
    assert not (tmp_path / "run").exists() and not (tmp_path / "cls").exists()  # nothing made
