"""Logits processors and Gumbel noise: what the built-in samplers do to logits before a draw.

The logits processors are small pure functions over ``(B, V)`` logits. :func:`process_logits`
applies them in Hugging Face's order, which :data:`PROCESSOR_ORDER` names:

1. :func:`apply_repetition_penalty`: ids already generated in the sequence have a positive logit
   divided by ``repetition_penalty`` and a negative one multiplied by it;
2. :func:`apply_temperature`: ``logits / temperature``;
3. :func:`top_k_filter`: keep the ``top_k`` largest logits;
4. :func:`top_p_filter`: keep the nucleus holding ``top_p`` of the probability;
5. :func:`min_p_filter`: keep the ids whose probability is at least ``min_p`` times the largest.

Each step sees the logits the earlier ones left, so the order matters: the penalty can change
which ids top-k and min-p keep, temperature changes the probabilities top-p and min-p measure,
and top-p renormalises over the survivors of top-k (min-p over those of top-p). Temperature
commutes with the penalty and with top-k (it keeps each logit's sign and the ranking). A filter
sets the logits it removes to ``-inf`` and always keeps the most likely id. Ties are broken
towards the lower id everywhere, so ``top_k=1`` and ``num_beams=1`` agree exactly with
``greedy``.

The repetition penalty needs each sequence's history, which ``select(logits)`` does not have:
:meth:`TemperatureSampler.sample` keeps, per sequence, the set of ids it has chosen itself (the
prime is not part of it, unlike in Hugging Face, whose ``input_ids`` include the prompt).

A sampler draws by the Gumbel-max trick: :func:`gumbel_max` adds :func:`gumbel_noise` (drawn for
many steps at once by :func:`noise_steps`) to the processed logits and takes the argmax.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

__all__ = [
    "NOISE_PER_DRAW",
    "PROCESSOR_ORDER",
    "apply_repetition_penalty",
    "apply_temperature",
    "at_least_float",
    "gumbel_max",
    "gumbel_noise",
    "min_p_filter",
    "noise_steps",
    "process_logits",
    "ranked",
    "top_k_filter",
    "top_p_filter",
]

PROCESSOR_ORDER: tuple[str, ...] = (
    "repetition_penalty",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
)
"""The order in which :func:`process_logits` (and so ``temperature``) applies its options."""


# -- logits processors --------------------------------------------------------------------------


def apply_repetition_penalty(logits: Tensor, seen: Tensor | None, penalty: float) -> Tensor:
    """Hugging Face's repetition penalty: for the ids in ``seen``, a logit ``> 0`` is divided by
    ``penalty`` and a logit ``< 0`` multiplied by it, so ``penalty > 1`` makes them less likely.

    ``seen`` is a boolean mask ``(B, V)`` of the ids each row has produced, or those ids as an
    int64 tensor ``(B, T)`` (Hugging Face's ``input_ids``); ``None`` or ``penalty`` 1 change
    nothing.
    """
    if not penalty > 0:
        raise ValueError(f"repetition_penalty must be > 0, got {penalty}")
    if penalty == 1.0 or seen is None:
        return logits
    if seen.dtype != torch.bool:
        seen = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device).scatter(
            -1, seen, True
        )
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalised, logits)


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """``logits / temperature``: below 1 sharpens the distribution, above 1 flattens it."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return logits if temperature == 1.0 else logits / temperature


def ranked(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Each row sorted high to low, equal logits in id order: ``(values, ids)``, ``(B, V)``."""
    return torch.sort(logits, dim=-1, descending=True, stable=True)


def top_k_filter(logits: Tensor, top_k: int | None) -> Tensor:
    """Keep the ``top_k`` largest logits of each row (lower id first among equals), ``-inf``
    elsewhere. ``None`` (or a ``top_k`` of at least V) keeps everything."""
    if top_k is None:
        return logits
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    vocab = logits.shape[-1]
    if top_k >= vocab:
        return logits
    _, ranked_ids = ranked(logits)
    removed = ranked_ids[..., top_k:]  # (B, V - k)
    return logits.scatter(-1, removed, float("-inf"))


def top_p_filter(logits: Tensor, top_p: float) -> Tensor:
    """Nucleus filtering: keep the smallest set of most likely ids whose probability reaches
    ``top_p``, ``-inf`` elsewhere. The most likely id is always kept; ``top_p`` 1 keeps all."""
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_p >= 1.0:
        return logits
    values, ranked_ids = ranked(logits)
    probs = at_least_float(values).softmax(dim=-1)  # (B, V), high to low
    before = probs.cumsum(dim=-1) - probs  # mass of the more likely ids
    remove = before >= top_p  # the first id has 0 before it: always kept
    removed = torch.zeros_like(remove).scatter(-1, ranked_ids, remove)
    return logits.masked_fill(removed, float("-inf"))


def min_p_filter(logits: Tensor, min_p: float) -> Tensor:
    """Min-p filtering: keep the ids whose probability is at least ``min_p`` times that of the
    most likely id, ``-inf`` elsewhere. The most likely id is always kept; ``min_p`` 0 keeps
    all."""
    if not 0 <= min_p < 1:
        raise ValueError(f"min_p must be in [0, 1), got {min_p}")
    if min_p == 0.0:
        return logits
    probs = at_least_float(logits).softmax(dim=-1)  # (B, V)
    threshold = min_p * probs.amax(dim=-1, keepdim=True)  # (B, 1)
    return logits.masked_fill(probs < threshold, float("-inf"))


def process_logits(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    min_p: float = 0.0,
    *,
    repetition_penalty: float = 1.0,
    seen: Tensor | None = None,
) -> Tensor:
    """The scores :class:`TemperatureSampler` draws from: the processors in
    :data:`PROCESSOR_ORDER` (repetition penalty over ``seen``, temperature, top-k, top-p,
    min-p). The defaults switch each one off."""
    logits = apply_repetition_penalty(logits, seen, repetition_penalty)
    logits = apply_temperature(logits, temperature)
    logits = top_k_filter(logits, top_k)
    logits = top_p_filter(logits, top_p)
    return min_p_filter(logits, min_p)


def at_least_float(logits: Tensor) -> Tensor:
    """Half-precision logits as float32; float32 and float64 as they are."""
    if logits.dtype in _FULL_PRECISION:
        return logits
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


_FULL_PRECISION = (torch.float32, torch.float64)


# -- Gumbel noise -------------------------------------------------------------------------------


def gumbel_noise(
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    scale: float = 1.0,
) -> Tensor:
    """Independent standard Gumbel noise :math:`G = -\\log E`, :math:`E \\sim \\mathrm{Exp}(1)`,
    times ``scale``, of shape ``shape``.

    The Gumbel-max trick: :math:`\\arg\\max_i (s_i + G_i)` is :math:`i` with probability
    :math:`\\mathrm{softmax}(s)_i`. Dividing the scores by a temperature :math:`T > 0` does not
    change which is largest once the noise is scaled instead, so
    :math:`\\arg\\max_i (l_i + T G_i)` draws from :math:`\\mathrm{softmax}(l / T)`: one
    addition and one ``argmax`` per step, where ``torch.multinomial`` (or a softmax and a draw)
    costs several kernels.
    """
    clocks = torch.empty(shape, dtype=dtype, device=device).exponential_(generator=generator)
    return clocks.clamp_min_(torch.finfo(dtype).tiny).log_().mul_(-scale)


def noise_steps(
    shape: tuple[int, ...],
    steps: int,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    scale: float = 1.0,
) -> Iterator[Tensor]:
    """:func:`gumbel_noise` of ``shape`` for each of ``steps`` steps, drawn for many steps at a
    time (up to ``2**16`` numbers per draw): the draw's cost is shared by the steps it serves."""
    per_draw = max(1, NOISE_PER_DRAW // max(1, math.prod(shape)))
    while steps > 0:
        count = min(steps, per_draw)
        block = gumbel_noise((count, *shape), generator, dtype=dtype, device=device, scale=scale)
        yield from block.unbind(0)  # (count, *shape) -> count x shape
        steps -= count


NOISE_PER_DRAW = 2**16
"""How many numbers :func:`noise_steps` draws at once (at least one step's)."""


def gumbel_max(scores: Tensor, noise: Tensor) -> Tensor:
    """``argmax(scores + noise)`` of each row ``(B, V)``: ids ``(B,)``. One row on the CPU is
    added and searched in numpy (:mod:`charseq.onerow`: a torch operation costs more there);
    the sums, and so the ids, are the same."""
    if scores.shape[0] == 1 and scores.device.type == "cpu" and not scores.requires_grad:
        return torch.from_numpy((scores.numpy() + noise.numpy()).argmax(axis=-1))  # (1,)
    return (scores + noise).argmax(dim=-1)
