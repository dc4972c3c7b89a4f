"""``charseq train --nproc N``: the same command again, as N processes, launched as torchrun
launches them.

On one machine ``--nproc N`` saves typing ``torchrun --standalone --nproc-per-node N -m
charseq train ...``: this process becomes torchrun's agent (``torch.distributed.launcher``),
starts N ranks running the command's own arguments (less ``--nproc``) and exits with their
status. Ctrl-C or SIGTERM to it reaches every rank, which saves a checkpoint and stops; a rank
that fails stops the others, and the message names it.
"""

from __future__ import annotations

import os
import sys
import uuid
from typing import NoReturn

import click

from charseq.errors import CharseqError

__all__ = ["launch", "train_arguments"]


def launch(nproc: int, argv: list[str] | None = None) -> NoReturn:
    """Run ``charseq train`` with this command line's arguments as ``nproc`` processes, as
    ``torchrun --standalone`` would, and exit: 0 when every rank finished, 130 when a signal
    stopped them (each saved a checkpoint), 1 when a rank failed."""
    if nproc < 1:
        raise CharseqError(f"--nproc must be at least 1, got {nproc}")
    # torchrun's agent, imported here: every other charseq command starts without it (~30 ms)
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    args = ["-u", "-m", "charseq", "train", *train_arguments(argv)]
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
        rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
    )  # fmt: skip
    # torchrun's default: the cores shared out among the ranks (it would warn and use 1)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    try:
        elastic_launch(config, sys.executable)(*args)
    except SignalException as stopped:
        click.echo(f"charseq: {stopped.sigval.name} passed on to every rank", err=True)
        sys.exit(130)
    except ChildFailedError as error:
        rank, failure = error.get_first_failure()
        why = failure.signal_name() if failure.exitcode < 0 else f"exit code {failure.exitcode}"
        click.echo(
            f"Error: rank {rank} of {nproc} failed ({why}), and the other ranks were stopped; "
            "the run directory keeps its last checkpoint (continue it with --resume)",
            err=True,
        )
        sys.exit(130 if failure.exitcode == 130 else 1)
    sys.exit(0)


def train_arguments(argv: list[str] | None = None) -> list[str]:
    """The arguments after ``train`` on this command line (``sys.argv``), without ``--nproc``.

    Raises:
        CharseqError: the command line has no ``train`` (``--nproc`` was not given on one).
    """
    argv = sys.argv[1:] if argv is None else argv
    if "train" not in argv:
        raise CharseqError("--nproc re-runs `charseq train ...` as it was typed: use it there")
    args = argv[argv.index("train") + 1 :]
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True  # and its value
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    return kept
