"""How the sampler checks run a sampler: through generation, on a tiny model, held to its shape.

:func:`run_sampler` runs a sampler the way :func:`charseq.generate.generate_ids` does and fails
with a :class:`~charseq.testing.CheckError` when what comes back is not a well-formed
:class:`charseq.SamplerOutput`; :func:`require_greedy` holds a sampler to the arg-max written
out by hand.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from charseq.constraints import CompiledConstraints, GenerationError
from charseq.generate import Decoder, generate_ids
from charseq.interfaces import Sampler, SamplerOutput
from charseq.model import CharModel
from charseq.testing._base import CheckError, Subject, describe, require
from charseq.testing.fixtures import PRIME, tiny_model

__all__ = [
    "EMPTY",
    "argmax_ids",
    "batch_size",
    "require_greedy",
    "run_sampler",
    "support",
    "with_unit_temperature",
]

EMPTY = torch.zeros(0, dtype=torch.long)
"""The empty prime."""


def with_unit_temperature(subject: Subject, **overrides: Any) -> dict[str, Any]:
    """Pin temperature to 1 where the sampler has one, so logits mean what they say."""
    if subject.tags.get("temperature"):
        overrides.setdefault("temperature", 1.0)
    return overrides


def batch_size(subject: Subject, wanted: int) -> int:
    """Token samplers take any batch; search samplers are run on a single prime."""
    return wanted if subject.tags.get("token_sampler") else 1


def run_sampler(
    sampler: Sampler,
    model: CharModel,
    steps: int,
    *,
    prime: Tensor = PRIME,
    num_samples: int = 1,
    seed: int | None = 0,
    constraints: CompiledConstraints | None = None,
) -> SamplerOutput:
    """``steps`` new ids after ``prime`` from ``model`` with ``sampler`` (a generator seeded with
    ``seed``, or none), checked: int64 ids ``(N, steps)`` and ``None`` or one score a row."""
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    call = f"sample(decoder, max_new_tokens={steps})"
    try:
        out = generate_ids(
            model, prime, sampler, steps, num_samples, generator, constraints=constraints
        )
    except GenerationError as error:  # the ids it chose were no ids, or forbidden ones
        raise CheckError(
            f"{call}: {error}",
            "choose ids from the last dimension of decoder.logits (argmax, torch.multinomial, "
            "topk) among those whose logit is finite (-inf is probability 0): integers "
            "(torch.long) in range(vocabulary size).",
        ) from error
    require(
        isinstance(out, SamplerOutput),
        f"{call} returned {type(out).__name__}",
        "return charseq.SamplerOutput(ids, scores).",
    )
    ids = out.ids
    require(
        isinstance(ids, Tensor)
        and ids.dtype == torch.long
        and ids.dim() == 2
        and ids.shape[1] == steps
        and ids.shape[0] >= 1,
        f"{call} returned ids {describe(ids, dtype=True)}; expected int64 of shape (N, {steps})",
        "ids hold the new ids only (not the prime), one row per sequence, as torch.long.",
    )
    if out.scores is not None:
        scores = out.scores
        require(
            isinstance(scores, Tensor)
            and scores.is_floating_point()
            and tuple(scores.shape) == (ids.shape[0],),
            f"{call} returned scores {describe(scores, dtype=True)}; expected a float tensor of "
            f"shape ({ids.shape[0]},), one per sequence",
            "return one score per row of ids, or scores=None.",
        )
    return out


@torch.no_grad()
def argmax_ids(model: CharModel, steps: int, batch: int = 1, prime: Tensor = PRIME) -> Tensor:
    """The greedy continuation, written out: take the arg-max, feed it back."""
    decoder = Decoder.from_prime(model.eval(), prime, batch)
    chosen = []
    for t in range(steps):
        ids = decoder.logits.argmax(dim=-1)  # (B,)
        chosen.append(ids)
        if t + 1 < steps:
            decoder.advance(ids)
    return torch.stack(chosen, dim=1)  # (B, T)


def require_greedy(subject: Subject, what: str, fix: str, **overrides: Any) -> None:
    """The sampler built with ``overrides`` gives the arg-max continuation (two seeds)."""
    sampler = subject.build_checked(**overrides)
    model = tiny_model(seed=7)  # its greedy path visits 4 different ids, not one fixed point
    batch = batch_size(subject, 3)
    for seed in (0, 1):
        got = run_sampler(sampler, model, 10, num_samples=batch, seed=seed).ids
        expected = argmax_ids(model, 10, batch)
        require(
            torch.equal(got[: expected.shape[0]], expected),
            f"{what} gave ids {got.tolist()}; taking the arg-max at every step gives "
            f"{expected.tolist()}",
            fix,
        )


def support(ids: Tensor) -> set[int]:
    """The distinct ids in ``ids``."""
    return set(ids.flatten().tolist())
