"""The built-in samplers: ``greedy``, ``temperature`` (with top-k / top-p / min-p and a
repetition penalty) and ``beam``.

The logits processors and the Gumbel noise they draw with live in :mod:`charseq.builtins.logits`
(re-exported here); ``temperature`` applies :func:`apply_repetition_penalty`,
:func:`apply_temperature`, :func:`top_k_filter`, :func:`top_p_filter` and :func:`min_p_filter` in
that order (:data:`PROCESSOR_ORDER`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
import torch
from torch import Tensor

from charseq.builtins.logits import (
    NOISE_PER_DRAW as _NOISE_PER_DRAW,  # noqa: F401 (read by the tests under its old name)
)
from charseq.builtins.logits import (
    PROCESSOR_ORDER,
    apply_repetition_penalty,
    apply_temperature,
    at_least_float,
    gumbel_max,
    gumbel_noise,
    min_p_filter,
    noise_steps,
    process_logits,
    ranked,
    top_k_filter,
    top_p_filter,
)
from charseq.hookspecs import hookimpl
from charseq.interfaces import Sampler, SamplerOutput, TokenSampler
from charseq.options import NoOptions, OptionError, build_options, option

if TYPE_CHECKING:
    from charseq.generate import Decoder
    from charseq.registry import Registrar

__all__ = [
    "PROCESSOR_ORDER",
    "BeamOptions",
    "BeamSampler",
    "GreedySampler",
    "TemperatureOptions",
    "TemperatureSampler",
    "apply_repetition_penalty",
    "apply_temperature",
    "gumbel_max",
    "gumbel_noise",
    "min_p_filter",
    "noise_steps",
    "process_logits",
    "top_k_filter",
    "top_p_filter",
]

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
    top_k: int | None = option(
        None, help="draw only from the k most likely ids (>= 1; unset: all ids)", min=1
    )
    top_p: float = option(
        1.0,
        help="draw only from the most likely ids holding this much probability (1: off)",
        min=0.0,
        max=1.0,
        min_exclusive=True,
    )
    min_p: float = option(
        0.0,
        help="draw only from ids at least this fraction as likely as the most likely one (0: off)",
        min=0.0,
        max=1.0,
        max_exclusive=True,
    )
    repetition_penalty: float = option(
        1.0,
        help="make ids already generated less likely: > 1 penalises, 1 is off",
        min=0.0,
        min_exclusive=True,
    )


@attrs.frozen(kw_only=True)
class BeamOptions:
    """Options of ``beam``."""

    num_beams: int = option(4, help="number of sequences kept at each step", min=1)
    length_penalty: float = option(
        1.0, help="the score is the sum of log-probabilities / length ** length_penalty"
    )
    num_return_sequences: int = option(
        1, help="sequences returned per input, best first (at most num_beams)", min=1
    )

    def __attrs_post_init__(self) -> None:
        if self.num_return_sequences > self.num_beams:
            raise OptionError(
                "num_return_sequences",
                f"must be <= num_beams, got num_return_sequences={self.num_return_sequences} "
                f"with num_beams={self.num_beams} (beam search keeps only num_beams sequences)",
            )


# -- samplers -----------------------------------------------------------------------------------


class GreedySampler(TokenSampler):
    r"""Always the most likely next id (the lowest such id on a tie).

    .. math::
        y_t = \arg\max_k z_{t,k}

    Shape:
        - logits :math:`(B, V)`; ids :math:`(B,)`.

    Example::

        >>> GreedySampler().select(torch.tensor([[0.1, 2.0, 2.0], [3.0, 0.0, 1.0]]))
        tensor([1, 0])
    """

    deterministic = True

    def select(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return logits.argmax(dim=-1)  # (B, V) -> (B,)

    def __repr__(self) -> str:
        return "GreedySampler()"


class TemperatureSampler(TokenSampler):
    r"""Draw each next id from the softmax of the processed logits (char-rnn's sampling).

    The options are applied in :data:`PROCESSOR_ORDER`: repetition penalty, temperature, top-k,
    top-p, min-p (see :func:`process_logits`). Each id is drawn by the Gumbel-max trick
    (:func:`gumbel_noise`): the argmax of the scores plus Gumbel noise, the noise of many steps
    drawn from ``generator`` at once (:func:`noise_steps`); with the temperature as the only
    option it scales the noise and the logits are used as they are.

    Args:
        temperature: divides the logits (> 0).
        top_k: keep only the ``top_k`` most likely ids (>= 1); ``None`` keeps all.
        top_p: keep only the most likely ids holding ``top_p`` of the probability; 1 keeps all.
        min_p: keep only the ids at least ``min_p`` times as likely as the most likely one,
            in ``[0, 1)``; 0 keeps all.
        repetition_penalty: ids this sampler already chose in a sequence have a positive logit
            divided by it and a negative one multiplied by it (> 0); 1 is off. The prime is not
            penalised.

    .. math::
        y_t = \arg\max_k \left(s_{t,k} + G_{t,k}\right), \qquad
        G_{t,k} = -\log E_{t,k},\; E_{t,k} \sim \mathrm{Exp}(1)

    where :math:`s_t` are the processed logits (:math:`z_t / \tau` with the temperature alone),
    so :math:`P(y_t = k) = \mathrm{softmax}(s_t)_k`.

    Shape:
        - logits :math:`(B, V)`; ids :math:`(B,)`; ``seen`` (for the penalty) :math:`(B, V)`.

    Example::

        >>> logits = torch.tensor([[0.0, 4.0, 4.5]]).expand(1000, -1)  # 1000 rows alike
        >>> ids = TemperatureSampler(top_k=2).select(logits, torch.Generator().manual_seed(0))
        >>> sorted(set(ids.tolist()))  # id 0 (0.7% of the softmax) is cut by top-k
        [1, 2]
    """

    def __init__(
        self,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float = 1.0,
        min_p: float = 0.0,
        repetition_penalty: float = 1.0,
    ) -> None:
        opts = build_options(
            TemperatureOptions,
            {
                "temperature": temperature,
                "top_k": top_k,
                "top_p": top_p,
                "min_p": min_p,
                "repetition_penalty": repetition_penalty,
            },
            "temperature",
        )
        self.temperature: float = opts.temperature
        self.top_k: int | None = opts.top_k
        self.top_p: float = opts.top_p
        self.min_p: float = opts.min_p
        self.repetition_penalty: float = opts.repetition_penalty
        self._filtered = top_k is not None or top_p < 1.0 or min_p > 0.0

    def process(self, logits: Tensor, seen: Tensor | None = None) -> Tensor:
        """The scores drawn from: :func:`process_logits` with this sampler's options."""
        return process_logits(
            at_least_float(logits),
            self.temperature,
            self.top_k,
            self.top_p,
            self.min_p,
            repetition_penalty=self.repetition_penalty,
            seen=seen,
        )

    def select(
        self,
        logits: Tensor,
        generator: torch.Generator | None = None,
        seen: Tensor | None = None,
    ) -> Tensor:
        """Draw the next ids ``(B,)`` from ``logits`` ``(B, V)``. ``seen`` (a ``(B, V)`` mask of
        the ids each row already has) is what the repetition penalty applies to; without it
        there is no penalty."""
        scores, scale = self._scores(logits, seen), self._noise_scale(seen)
        noise = gumbel_noise(
            scores.shape, generator, dtype=scores.dtype, device=scores.device, scale=scale
        )
        return gumbel_max(scores, noise)  # (B, V) -> (B,)

    def _folds_temperature(self, seen: Tensor | None) -> bool:
        """Whether the temperature is the only option in play, so it scales the noise instead
        of the logits (see :func:`gumbel_noise`) and the filters are skipped."""
        return seen is None and not self._filtered

    def _scores(self, logits: Tensor, seen: Tensor | None) -> Tensor:
        """The scores to add Gumbel noise to: the logits themselves where the temperature is
        folded into the noise, else :meth:`process`'s."""
        if self._folds_temperature(seen):
            return at_least_float(logits)
        return self.process(logits, seen)

    def _noise_scale(self, seen: Tensor | None) -> float:
        """The temperature where :meth:`_scores` leaves it out, else 1."""
        return self.temperature if self._folds_temperature(seen) else 1.0

    def _chooser(
        self, decoder: Decoder, max_new_tokens: int, generator: torch.Generator | None
    ) -> Callable[[Tensor], Tensor]:
        """Each step's choice for :meth:`TokenSampler.steps`, with the noise of many steps drawn
        at once and each sequence's chosen ids kept for the repetition penalty."""
        logits = decoder.logits  # (B, V)
        seen = None
        if self.repetition_penalty != 1.0:
            seen = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
        noise = noise_steps(  # an iterator: one (B, V) tensor per step
            logits.shape,
            max_new_tokens,
            generator,
            dtype=at_least_float(logits).dtype,
            device=logits.device,
            scale=self._noise_scale(seen),
        )

        def choose(logits: Tensor) -> Tensor:
            ids = gumbel_max(self._scores(logits, seen), next(noise))  # (B,)
            if seen is not None:
                seen.scatter_(1, ids.unsqueeze(1), True)  # penalised from the next step on
            return ids

        return choose

    def __repr__(self) -> str:
        return (
            f"TemperatureSampler(temperature={self.temperature}, top_k={self.top_k}, "
            f"top_p={self.top_p}, min_p={self.min_p}, "
            f"repetition_penalty={self.repetition_penalty})"
        )


class BeamSampler(Sampler):
    """Beam search: keep the ``num_beams`` most likely sequences of each input row.

    All ``B * num_beams`` beams advance in one batched step and the decoder's state is reordered
    by index. Every sequence has the same length ``T`` (there is no end token), so the length
    penalty only scales the score: ``sum of log-probabilities / T ** length_penalty``, as
    Hugging Face computes it over the generated ids. For the same reason there is no
    ``early_stopping``: no beam can finish before ``max_new_tokens``.

    Returns the ``num_return_sequences`` best sequences of each of the decoder's ``B`` rows,
    ``(B * num_return_sequences, T)``, row by row and best first within each row (row ``b``'s
    are ``b * R`` to ``b * R + R - 1``), and their scores ``(B * num_return_sequences,)``,
    descending within each row. A score of ``-inf`` marks a sequence the model gives probability
    0 (when fewer than ``num_return_sequences`` others are possible, e.g. with masked logits):
    a copy of the row's best sequence, so that no id of ``-inf`` logit is ever chosen.

    Args:
        num_beams: sequences kept at each step (>= 1); 1 is greedy decoding.
        length_penalty: the exponent of the length the score is divided by.
        num_return_sequences: how many of the best sequences to return per row
            (<= ``num_beams``).

    Shape:
        - returned ids :math:`(B R, T)` and scores :math:`(B R,)`, with :math:`R` =
          ``num_return_sequences``.

    Example::

        >>> from charseq.generate import generate_ids
        >>> from charseq.model import CharModel
        >>> from charseq.builtins.cells import GRUCell
        >>> _ = torch.manual_seed(0)
        >>> model = CharModel(5, 4, [GRUCell(4, 8)])
        >>> beam = BeamSampler(num_beams=4, num_return_sequences=2)
        >>> out = generate_ids(model, torch.tensor([0]), beam, max_new_tokens=6)
        >>> out.ids.shape, out.scores.shape  # 2 sequences of 6 ids for the one prime
        (torch.Size([2, 6]), torch.Size([2]))
        >>> bool(out.scores[0] >= out.scores[1])  # best first
        True

    ``Pipeline.generate("a", 6, sampler=beam)`` returns the two as texts.
    """

    deterministic = True

    def __init__(
        self, *, num_beams: int = 4, length_penalty: float = 1.0, num_return_sequences: int = 1
    ) -> None:
        opts = build_options(
            BeamOptions,
            {
                "num_beams": num_beams,
                "length_penalty": length_penalty,
                "num_return_sequences": num_return_sequences,
            },
            "beam",
        )
        self.num_beams: int = opts.num_beams
        self.length_penalty: float = opts.length_penalty
        self.num_return_sequences: int = opts.num_return_sequences

    @torch.no_grad()
    def sample(
        self, decoder: Decoder, max_new_tokens: int, generator: torch.Generator | None = None
    ) -> SamplerOutput:
        batch, vocab = decoder.logits.shape
        device = decoder.logits.device
        k, returned = self.num_beams, self.num_return_sequences
        if max_new_tokens <= 0:
            empty = torch.empty(batch * returned, 0, dtype=torch.long, device=device)
            return SamplerOutput(empty, torch.zeros(batch * returned, device=device))
        if not _at_least(vocab, max_new_tokens, returned):
            raise ValueError(
                f"num_return_sequences={returned} distinct sequences were asked for, but a "
                f"vocabulary of {vocab} ids has only {vocab**max_new_tokens} of length "
                f"{max_new_tokens}"
            )
        rows = torch.arange(batch, device=device)
        decoder.reorder(rows.repeat_interleave(k))  # B -> B*K, each row's beams together
        first_beam = (rows * k).unsqueeze(1)  # (B, 1): where each row's beams start
        # Only the first beam of each row starts alive, so step one picks K distinct ids.
        dtype = at_least_float(decoder.logits).dtype
        scores = torch.full((batch, k), float("-inf"), device=device, dtype=dtype)
        scores[:, 0] = 0.0
        parents, tokens = [], []  # per step: which beam each beam extends, and its new id
        for t in range(max_new_tokens):
            logprobs = at_least_float(decoder.logits).log_softmax(dim=-1)  # (B*K, V)
            logprobs = logprobs.view(batch, k, vocab)  # (B*K, V) -> (B, K, V)
            # every beam's score plus each next id's: (B, K, V) -> (B, K*V), beam-major
            candidates = (scores.unsqueeze(-1) + logprobs).view(batch, k * vocab)
            scores, flat = ranked(candidates)  # stable: ties go to the lower beam, then id
            scores, flat = scores[:, :k], flat[:, :k]  # (B, K)
            beam, token = flat // vocab, flat % vocab  # (B, K) each
            # A beam of probability 0 (fewer possible sequences than beams, as under
            # constraints) copies the best instead of taking an id of -inf logit, which the
            # decoder refuses; its score stays -inf, so it never outranks a possible one.
            dead = scores.isneginf()  # (B, K)
            beam = torch.where(dead, beam[:, :1], beam)
            token = torch.where(dead, token[:, :1], token)
            parents.append(beam)
            tokens.append(token)
            if t + 1 < max_new_tokens:
                decoder.reorder((first_beam + beam).view(-1))  # (B*K,)
                decoder.advance(token.view(-1))  # one batched step for all beams
        # Candidates are sorted, so the first beams of each row are its best sequences; follow
        # their parents back to the first step.
        beam = torch.arange(returned, device=device).expand(batch, returned)  # (B, R)
        history = []
        for parent, token in zip(reversed(parents), reversed(tokens), strict=True):
            history.append(token.gather(1, beam))  # (B, R)
            beam = parent.gather(1, beam)
        best = torch.stack(history[::-1], dim=-1).reshape(batch * returned, -1)  # (B*R, T)
        best_scores = scores[:, :returned].reshape(batch * returned)  # (B*R,)
        return SamplerOutput(best, best_scores / max_new_tokens**self.length_penalty)

    def __repr__(self) -> str:
        return (
            f"BeamSampler(num_beams={self.num_beams}, length_penalty={self.length_penalty}, "
            f"num_return_sequences={self.num_return_sequences})"
        )


def _at_least(vocab: int, length: int, count: int) -> bool:
    """Whether ``vocab ** length >= count``, without building a huge number."""
    total = 1
    for _ in range(length):
        total *= vocab
        if total >= count:
            return True
    return total >= count


@hookimpl
def charseq_register_samplers(registry: Registrar) -> None:
    registry.add("greedy", GreedySampler, options=NoOptions, help="always the most likely id")
    registry.add(
        "temperature",
        TemperatureSampler,
        options=TemperatureOptions,
        help="draw from the softmax of logits / temperature, optionally top-k / top-p / min-p "
        "filtered and with a repetition penalty",
    )
    registry.add(
        "beam",
        BeamSampler,
        options=BeamOptions,
        help="beam search: the most likely whole sequences among num_beams kept at each step",
    )
