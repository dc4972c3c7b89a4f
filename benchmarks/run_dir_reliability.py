"""Readers and writers of one run directory: reads while a run trains, and kills. It counts
failures, not time, so a busy machine is fine.

(a) Readers during training. A trainer process (``charseq train`` on a tiny GRU, with
``train.checkpoint_every=1``, ``train.keep_last=1`` and an evaluation every 5 steps, so every step
prunes the previous checkpoint and ``best/`` is replaced often) writes into a run directory while
this process loads the run and its ``best/``, alternately, ``--reads`` times through
``Pipeline.load``, then runs ``charseq sample RUN --length 10`` ``--cli-reads`` times. Every
failure counts (there should be none).

(b) Kills. ``--kills`` times, the trainer (a resume of the same run) is SIGKILLed at a random
moment after it wrote a new checkpoint. Then: every step checkpoint left must verify (size and
SHA-256 of every file), ``latest.json`` must name directories that exist, ``RUN/best`` must be
readable once a best was saved (the times a kill left ``best/`` itself moved aside on disk, which
readers and the next save cope with, are counted apart), and the next resume must start. A last
resume runs to its end, and ``metrics.jsonl`` must then hold each step once.

    OMP_NUM_THREADS=1 python benchmarks/run_dir_reliability.py
    python benchmarks/run_dir_reliability.py --reads 20 --cli-reads 1 --kills 2   # a quick look
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _bench import emit, machine  # noqa: E402

from charseq import Pipeline  # noqa: E402
from charseq.checkpoint import (  # noqa: E402
    BEST_DIR,
    LATEST_FILE,
    CheckpointError,
    CheckpointStore,
    load_checkpoint,
    read_checkpoint,
)

SETTINGS = [
    "cell.name=gru",
    "cell.hidden_size=16",
    "cell.num_layers=1",
    "model.embedding_size=8",
    "train.batch_size=4",
    "train.seq_len=16",
    "train.eval_every=5",
    "train.checkpoint_every=1",
    "train.keep_last=1",
]
FOREVER = 10_000_000
"""The trainer's --steps: it is killed long before."""
WAIT = 120.0
"""Seconds to wait for a trainer's next checkpoint before calling it stuck."""


def charseq(*args: str) -> list[str]:
    return [sys.executable, "-m", "charseq", *args]


def start_trainer(run: Path, corpus: Path, log: Path, *, resume: bool) -> subprocess.Popen:
    if resume:
        args = ["train", "--resume", str(run), "--steps", str(FOREVER)]
    else:
        sets = [item for setting in SETTINGS for item in ("--set", setting)]
        args = ["train", "--data", str(corpus), "--out", str(run), *sets]
        args += ["--steps", str(FOREVER)]
    with log.open("wb") as out:
        return subprocess.Popen(
            charseq(*args, "--no-progress", "--device", "cpu"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def latest_bytes(run: Path) -> bytes | None:
    try:
        return (run / LATEST_FILE).read_bytes()
    except OSError:
        return None


def wait_for_checkpoint(
    run: Path, before: bytes | None, trainer: subprocess.Popen, *, best: bool = False
) -> bool:
    """Wait until ``latest.json`` changes from ``before`` (and, with ``best``, ``best/`` is
    there); False if the trainer ended or stalled first."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        now = latest_bytes(run)
        if now is not None and now != before and (not best or (run / BEST_DIR).is_dir()):
            return True
        if trainer.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def stop(trainer: subprocess.Popen) -> None:
    trainer.kill()  # SIGKILL: nothing of the trainer's runs after it
    trainer.wait()


def latest_step(run: Path) -> int:
    return int(json.loads((run / LATEST_FILE).read_text())["latest"][5:])


def tail(log: Path) -> str:
    return log.read_text("utf-8", "replace")[-400:]


def distinct(errors: list[str], work: Path, most: int = 5) -> list[str]:
    """The first ``most`` different messages, the scratch directory left out."""
    return list(dict.fromkeys(e.replace(str(work), "WORK") for e in errors))[:most]


def readers(run: Path, corpus: Path, work: Path, reads: int, cli_reads: int) -> dict:
    """Part (a): load the run (and its best/) while a trainer writes it."""
    log = work / "trainer-a.log"
    trainer = start_trainer(run, corpus, log, resume=False)
    errors: list[str] = []
    failed = {"run": 0, "best": 0, "cli": 0}
    try:
        if not wait_for_checkpoint(run, None, trainer, best=True):
            raise RuntimeError(f"the trainer wrote no checkpoint with a best: {tail(log)}")
        first = latest_step(run)
        for i in range(reads):
            target = run if i % 2 == 0 else run / BEST_DIR
            try:
                Pipeline.load(target, device="cpu")
            except Exception as error:  # every failure is counted, whatever its type
                failed["run" if target == run else "best"] += 1
                errors.append(f"load {target.name}: {type(error).__name__}: {error}")
        for _ in range(cli_reads):
            done = subprocess.run(
                charseq("sample", str(run), "--length", "10", "--device", "cpu"),
                capture_output=True,
                text=True,
            )
            if done.returncode != 0 or len(done.stdout) < 10:
                failed["cli"] += 1
                errors.append(f"charseq sample: exit {done.returncode}: {done.stderr[-300:]}")
        last, alive = latest_step(run), trainer.poll() is None
    finally:
        stop(trainer)
    return {
        "part": "readers",
        "api_reads": reads,
        "cli_reads": cli_reads,
        "failures": len(errors),
        **{f"{kind}_failures": n for kind, n in failed.items()},
        "errors": distinct(errors, work),
        "checkpoints_written_meanwhile": last - first,
        "trainer_ran_throughout": alive,
    }


def check(run: Path, counts: dict) -> None:
    """After a kill: every checkpoint whole, latest.json naming what is there, best readable."""
    for path in CheckpointStore(run).checkpoints():
        try:
            load_checkpoint(path)
        except CheckpointError:
            counts["corrupt"] += 1
    index = json.loads((run / LATEST_FILE).read_text())
    for name in {index["latest"], index["best"]} - {None}:
        if not (run / name).is_dir():
            counts["latest_json_names_missing"] += 1
    if index["best"] is not None:
        if not (run / BEST_DIR).is_dir():
            counts["best_moved_aside_on_disk"] += 1
        try:
            read_checkpoint(run / BEST_DIR, ["model"])
        except CheckpointError:
            counts["best_unreadable"] += 1
    try:
        read_checkpoint(run, ["model"])
    except CheckpointError:
        counts["run_unreadable"] += 1


def kills(run: Path, corpus: Path, work: Path, times: int, rng: random.Random) -> dict:
    """Part (b): SIGKILL resumed trainers at random moments, checking the run after each."""
    counts = dict.fromkeys(
        [
            "corrupt",
            "latest_json_names_missing",
            "best_unreadable",
            "run_unreadable",
            "best_moved_aside_on_disk",
            "resume_failures",
        ],
        0,
    )
    errors: list[str] = []
    check(run, counts)  # after part (a)'s trainer was killed
    log = work / "trainer-b.log"
    for _ in range(times):
        before = latest_bytes(run)
        trainer = start_trainer(run, corpus, log, resume=True)
        try:
            if not wait_for_checkpoint(run, before, trainer):
                counts["resume_failures"] += 1
                errors.append(f"resume: {tail(log)}")
                continue
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            stop(trainer)
        check(run, counts)
    final = latest_step(run) + 3  # a last resume runs to its end
    done = subprocess.run(
        charseq("train", "--resume", str(run), "--steps", str(final), "--no-progress"),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        counts["resume_failures"] += 1
        errors.append(f"last resume: exit {done.returncode}: {done.stderr[-300:]}")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["event"] == "step"]
    return {
        "part": "kills",
        "kills": times,
        **counts,
        "metrics_steps_repeated": len(steps) - len(set(steps)),
        "metrics_steps_missing": len(set(range(1, final + 1)) - set(steps)),
        "last_step": latest_step(run),
        "errors": distinct(errors, work),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=1000, help="Pipeline.load calls")
    parser.add_argument("--cli-reads", type=int, default=20, help="charseq sample calls")
    parser.add_argument("--kills", type=int, default=40, help="SIGKILLed trainers")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--work", type=Path, help="where the run goes (default: a temporary dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="charseq-reliability-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        corpus, run = work / "corpus.txt", work / "run"
        corpus.write_text(
            "".join(f"line {i}: the quick brown fox {i % 7} jumps. " for i in range(2000)),
            "utf-8",
        )
        stamp = machine(torch.device("cpu"))
        emit({**readers(run, corpus, work, args.reads, args.cli_reads), **stamp})
        emit({**kills(run, corpus, work, args.kills, random.Random(args.seed)), **stamp})


if __name__ == "__main__":
    main()
