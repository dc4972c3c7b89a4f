"""The built-in samplers: ``greedy``, ``temperature`` (with top-k / top-p) and ``beam``.

The logits processors are small pure functions over ``(B, V)`` logits, applied in the order
Hugging Face uses: :func:`apply_temperature`, then :func:`top_k_filter`, then
:func:`top_p_filter`. A filter sets the logits it removes to ``-inf``. Ties are broken towards
the lower id everywhere, so ``top_k=1`` and ``num_beams=1`` agree exactly with ``greedy``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import torch
from torch import Tensor

from charseq.hookspecs import hookimpl
from charseq.interfaces import Sampler, SamplerOutput, TokenSampler
from charseq.options import NoOptions, build_options, option

if TYPE_CHECKING:
    from charseq.generate import Decoder


# -- logits processors --------------------------------------------------------------------------


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """``logits / temperature``: below 1 sharpens the distribution, above 1 flattens it."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return logits if temperature == 1.0 else logits / temperature


def _ranked(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Each row sorted high to low, equal logits in id order: ``(values, ids)``, ``(B, V)``."""
    return torch.sort(logits, dim=-1, descending=True, stable=True)


def top_k_filter(logits: Tensor, top_k: int) -> Tensor:
    """Keep the ``top_k`` largest logits of each row (lower id first among equals), ``-inf``
    elsewhere. ``top_k`` 0 (or at least V) keeps everything."""
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    vocab = logits.shape[-1]
    if top_k == 0 or top_k >= vocab:
        return logits
    _, ranked_ids = _ranked(logits)
    removed = ranked_ids[..., top_k:]  # (B, V - k)
    return logits.scatter(-1, removed, float("-inf"))


def top_p_filter(logits: Tensor, top_p: float) -> Tensor:
    """Nucleus filtering: keep the smallest set of most likely ids whose probability reaches
    ``top_p``, ``-inf`` elsewhere. The most likely id is always kept; ``top_p`` 1 keeps all."""
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_p >= 1.0:
        return logits
    values, ranked_ids = _ranked(logits)
    probs = _at_least_float(values).softmax(dim=-1)  # (B, V), high to low
    before = probs.cumsum(dim=-1) - probs  # mass of the more likely ids
    remove = before >= top_p  # the first id has 0 before it: always kept
    removed = torch.zeros_like(remove).scatter(-1, ranked_ids, remove)
    return logits.masked_fill(removed, float("-inf"))


def process_logits(
    logits: Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
) -> Tensor:
    """Temperature, then top-k, then top-p: the scores :class:`TemperatureSampler` draws from."""
    return top_p_filter(top_k_filter(apply_temperature(logits, temperature), top_k), top_p)


# -- options ------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class TemperatureOptions:
    """Options of ``temperature``."""

    temperature: float = option(
        1.0,
        help="divide the logits by this: < 1 is more conservative, > 1 more surprising",
        min=0.0,
        min_exclusive=True,
    )
    top_k: int = option(0, help="draw only from the k most likely ids (0: off)", min=0)
    top_p: float = option(
        1.0,
        help="draw only from the most likely ids holding this much probability (1: off)",
        min=0.0,
        max=1.0,
        min_exclusive=True,
    )


@attrs.frozen(kw_only=True)
class BeamOptions:
    """Options of ``beam``."""

    num_beams: int = option(4, help="number of sequences kept at each step", min=1)
    length_penalty: float = option(
        1.0, help="the score is the sum of log-probabilities / length ** length_penalty"
    )


# -- samplers -----------------------------------------------------------------------------------


class GreedySampler(TokenSampler):
    """Always the most likely next id (the lowest such id on a tie)."""

    def select(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return logits.argmax(dim=-1)  # (B, V) -> (B,)

    def __repr__(self) -> str:
        return "GreedySampler()"


class TemperatureSampler(TokenSampler):
    """Draw each next id from the softmax of the processed logits (char-rnn's sampling).

    Args:
        temperature: divides the logits (> 0).
        top_k: keep only the ``top_k`` most likely ids; 0 keeps all.
        top_p: keep only the most likely ids holding ``top_p`` of the probability; 1 keeps all.
    """

    def __init__(self, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> None:
        opts = build_options(
            TemperatureOptions,
            {"temperature": temperature, "top_k": top_k, "top_p": top_p},
            "temperature",
        )
        self.temperature: float = opts.temperature
        self.top_k: int = opts.top_k
        self.top_p: float = opts.top_p

    def select(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        scores = process_logits(_at_least_float(logits), self.temperature, self.top_k, self.top_p)
        probs = scores.softmax(dim=-1)  # (B, V)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)

    def __repr__(self) -> str:
        return (
            f"TemperatureSampler(temperature={self.temperature}, top_k={self.top_k}, "
            f"top_p={self.top_p})"
        )


class BeamSampler(Sampler):
    """Beam search: keep the ``num_beams`` most likely sequences of each input row.

    All ``B * num_beams`` beams advance in one batched step. Every sequence has the same
    length ``T`` (there is no end token), so the length penalty only scales the score:
    ``sum of log-probabilities / T ** length_penalty``, as Hugging Face computes it.

    Returns the best sequence of each of the decoder's ``B`` rows, ``(B, T)``, and its score
    ``(B,)``.
    """

    def __init__(self, *, num_beams: int = 4, length_penalty: float = 1.0) -> None:
        opts = build_options(
            BeamOptions, {"num_beams": num_beams, "length_penalty": length_penalty}, "beam"
        )
        self.num_beams: int = opts.num_beams
        self.length_penalty: float = opts.length_penalty

    @torch.no_grad()
    def sample(
        self, decoder: Decoder, max_new_tokens: int, generator: torch.Generator | None = None
    ) -> SamplerOutput:
        batch, vocab = decoder.logits.shape
        device = decoder.logits.device
        k = self.num_beams
        if max_new_tokens <= 0:
            empty = torch.empty(batch, 0, dtype=torch.long, device=device)
            return SamplerOutput(empty, torch.zeros(batch, device=device))
        rows = torch.arange(batch, device=device)
        decoder.reorder(rows.repeat_interleave(k))  # B -> B*K, each row's beams together
        # Only the first beam of each row starts alive, so step one picks K distinct ids.
        dtype = _at_least_float(decoder.logits).dtype
        scores = torch.full((batch, k), float("-inf"), device=device, dtype=dtype)
        scores[:, 0] = 0.0
        tokens = torch.empty(batch, k, 0, dtype=torch.long, device=device)
        for t in range(max_new_tokens):
            logprobs = _at_least_float(decoder.logits).log_softmax(dim=-1).view(batch, k, vocab)
            candidates = (scores.unsqueeze(-1) + logprobs).view(batch, k * vocab)
            scores, flat = _ranked(candidates)  # stable: ties go to the lower beam, then id
            scores, flat = scores[:, :k], flat[:, :k]  # (B, K)
            beam, token = flat // vocab, flat % vocab  # (B, K) each
            tokens = torch.cat([tokens.gather(1, _expand(beam, t)), token.unsqueeze(-1)], dim=-1)
            if t + 1 < max_new_tokens:
                decoder.reorder((rows.unsqueeze(1) * k + beam).view(-1))  # (B*K,)
                decoder.advance(token.view(-1))  # one batched step for all beams
        best = tokens[:, 0]  # (B, T): candidates are sorted, so beam 0 is the best
        return SamplerOutput(best, scores[:, 0] / max_new_tokens**self.length_penalty)

    def __repr__(self) -> str:
        return f"BeamSampler(num_beams={self.num_beams}, length_penalty={self.length_penalty})"


def _at_least_float(logits: Tensor) -> Tensor:
    """Half-precision logits as float32; float32 and float64 as they are."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def _expand(beam: Tensor, length: int) -> Tensor:
    """``(B, K)`` beam indices as a gather index over ``(B, K, length)`` histories."""
    return beam.unsqueeze(-1).expand(-1, -1, length)


@hookimpl
def charseq_register_samplers(registry: Any) -> None:
    registry.add("greedy", GreedySampler, options=NoOptions, help="always the most likely id")
    registry.add(
        "temperature",
        TemperatureSampler,
        options=TemperatureOptions,
        help="draw from the softmax of logits / temperature, optionally top-k / top-p filtered",
    )
    registry.add(
        "beam",
        BeamSampler,
        options=BeamOptions,
        help="beam search: the most likely whole sequence among num_beams kept at each step",
    )
