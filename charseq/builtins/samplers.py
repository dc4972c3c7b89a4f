"""The built-in samplers: ``greedy``, ``temperature`` (with top-k / top-p / min-p and a
repetition penalty) and ``beam``.

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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import attrs
import torch
from torch import Tensor

from charseq.hookspecs import hookimpl
from charseq.interfaces import Sampler, SamplerOutput, TokenSampler
from charseq.options import NoOptions, OptionError, build_options, option

if TYPE_CHECKING:
    from charseq.generate import Decoder
    from charseq.registry import Registrar

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


def _ranked(logits: Tensor) -> tuple[Tensor, Tensor]:
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


def min_p_filter(logits: Tensor, min_p: float) -> Tensor:
    """Min-p filtering: keep the ids whose probability is at least ``min_p`` times that of the
    most likely id, ``-inf`` elsewhere. The most likely id is always kept; ``min_p`` 0 keeps
    all."""
    if not 0 <= min_p < 1:
        raise ValueError(f"min_p must be in [0, 1), got {min_p}")
    if min_p == 0.0:
        return logits
    probs = _at_least_float(logits).softmax(dim=-1)  # (B, V)
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
    per_draw = max(1, _NOISE_PER_DRAW // max(1, math.prod(shape)))
    while steps > 0:
        count = min(steps, per_draw)
        block = gumbel_noise((count, *shape), generator, dtype=dtype, device=device, scale=scale)
        yield from block.unbind(0)  # (count, *shape) -> count x shape
        steps -= count


_NOISE_PER_DRAW = 2**16


def gumbel_max(scores: Tensor, noise: Tensor) -> Tensor:
    """``argmax(scores + noise)`` of each row ``(B, V)``: ids ``(B,)``. One row on the CPU is
    added and searched in numpy (:mod:`charseq.onerow`: a torch operation costs more there);
    the sums, and so the ids, are the same."""
    if scores.shape[0] == 1 and scores.device.type == "cpu" and not scores.requires_grad:
        return torch.from_numpy((scores.numpy() + noise.numpy()).argmax(axis=-1))  # (1,)
    return (scores + noise).argmax(dim=-1)


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
            _at_least_float(logits),
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
            return _at_least_float(logits)
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
            dtype=_at_least_float(logits).dtype,
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
        dtype = _at_least_float(decoder.logits).dtype
        scores = torch.full((batch, k), float("-inf"), device=device, dtype=dtype)
        scores[:, 0] = 0.0
        parents, tokens = [], []  # per step: which beam each beam extends, and its new id
        for t in range(max_new_tokens):
            logprobs = _at_least_float(decoder.logits).log_softmax(dim=-1)  # (B*K, V)
            logprobs = logprobs.view(batch, k, vocab)  # (B*K, V) -> (B, K, V)
            # every beam's score plus each next id's: (B, K, V) -> (B, K*V), beam-major
            candidates = (scores.unsqueeze(-1) + logprobs).view(batch, k * vocab)
            scores, flat = _ranked(candidates)  # stable: ties go to the lower beam, then id
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


def _at_least_float(logits: Tensor) -> Tensor:
    """Half-precision logits as float32; float32 and float64 as they are."""
    if logits.dtype in _FULL_PRECISION:
        return logits
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


_FULL_PRECISION = (torch.float32, torch.float64)


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
