"""What the speed benchmarks share: the machine's description, timing, peak memory, JSON lines.

Timing alternates the contenders round by round and reports each one's median round, so that a
slow spell on a shared machine hits all of them alike; only ratios from one run are compared.
Peak memory is CUDA's ``max_memory_allocated`` on a GPU and, on a Linux CPU, the growth of the
process's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) while a
contender runs.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch

from charseq.cli._options import parse_setting

ROOT = Path(__file__).resolve().parent.parent


def add_common_arguments(parser: argparse.ArgumentParser, rounds: int = 5) -> None:
    """``--device``, ``--rounds`` and ``--threads``, which every speed benchmark takes."""
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--rounds", type=int, default=rounds, help="rounds; the median is kept")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")


def setup(args: argparse.Namespace) -> torch.device:
    """Apply ``--threads`` and return the ``--device``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return torch.device(args.device)


def machine(device: torch.device) -> dict:
    """Date, device, torch version and thread count, stamped on every JSON line."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "device": name,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def emit(record: dict) -> None:
    """Print one JSON line (flushed, so a long run can be watched)."""
    print(json.dumps(record), flush=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_rounds(
    contenders: dict[str, Callable[[], int]],
    device: torch.device,
    rounds: int,
) -> dict[str, float]:
    """Units per second of each contender: the median over ``rounds`` alternating rounds.

    Each contender is a callable that does one round of work and returns how many units
    (characters) it processed.
    """
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            synchronize(device)
            start = time.perf_counter()
            units = run()
            synchronize(device)
            rates[name].append(units / (time.perf_counter() - start))
    return {name: statistics.median(r) for name, r in rates.items()}


class PeakMemory:
    """Peak memory, in MiB, of the work done inside ``with PeakMemory(device) as peak:``.

    ``peak.mib`` is ``None`` where it cannot be measured (a CPU outside Linux).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mib: float | None = None
        self._base = 0

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        elif _linux_rss() is not None:
            _trim_heap()
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
            self._base = _linux_rss()["VmRSS"]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) - self._base
            self.mib = peak / 2**20
        elif (status := _linux_rss()) is not None:
            self.mib = (status["VmHWM"] - self._base) / 1024  # kB -> MiB


def _linux_rss() -> dict[str, int] | None:
    """VmRSS and VmHWM in kB, or ``None`` off Linux."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = {k: re.search(rf"{k}:\s+(\d+)", text) for k in ("VmRSS", "VmHWM")}
    if not all(found.values()):
        return None
    return {k: int(m.group(1)) for k, m in found.items()}


def _trim_heap() -> None:
    """Give freed heap memory back to the OS, so one contender's peak is not the next's base."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def ratio(a: float, b: float) -> float:
    return round(a / b, 3)


def stamp() -> str:
    return time.strftime("%H:%M:%S")


def add_set_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--set KEY=VALUE`` (repeatable, a JSON value) into ``settings``; ``what`` says which
    spec it overrides."""
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a spec value of {what} (JSON value)",
    )


def spec_changes(settings: list[str]) -> dict:
    """``--set`` strings as the dotted changes ``PipelineSpec.override`` takes, read as
    ``charseq train --set`` reads them (JSON where it parses, else a string: ``kind=locked``)."""
    return dict(parse_setting(setting) for setting in settings)
