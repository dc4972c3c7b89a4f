"""Which device charseq runs on: the one asked for, checked against this machine, or the best
one found."""

from __future__ import annotations

import torch

from charseq.distributed import local_device
from charseq.errors import CharseqError

DEVICE_TYPES = ("cpu", "cuda", "mps")
"""The kinds of device charseq trains and generates on."""


def resolve_device(device: torch.device | str | None = None) -> torch.device:
    """``device`` checked against this machine (:func:`check_device`), or the best device found
    (:func:`default_device`) when it is ``None``.

    In a torchrun job with CUDA, ``None`` and ``"cuda"`` mean this process's own GPU,
    ``cuda:LOCAL_RANK`` (:func:`charseq.distributed.local_device`).
    """
    device = local_device(device)
    return default_device() if device is None else check_device(device)


def check_device(device: torch.device | str) -> torch.device:
    """``device`` as a torch device, if this machine has it.

    Raises:
        CharseqError: an unknown name, a kind charseq does not run on, or a device this
            machine lacks (no CUDA build or GPU, no such GPU index, no MPS).
    """
    try:
        checked = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise CharseqError(f"unknown device {device!r}: {error}") from None
    if checked.type not in DEVICE_TYPES:  # torch names more (xla, vulkan, meta: no data)
        raise CharseqError(
            f"device {str(checked)!r}: charseq runs on {', '.join(DEVICE_TYPES)} "
            "(cuda:N for one GPU of several)"
        )
    if checked.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is a CPU-only build" if torch.version.cuda is None else "no CUDA GPU"
            raise CharseqError(f"device {str(checked)!r} was asked for, but {why}; use 'cpu'")
        if checked.index is not None and checked.index >= torch.cuda.device_count():
            raise CharseqError(
                f"device {str(checked)!r} was asked for, but there are "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    if checked.type == "mps" and not torch.backends.mps.is_available():
        raise CharseqError(f"device {str(checked)!r} was asked for, but MPS is not available")
    return checked


def default_device() -> torch.device:
    """The best device found: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
