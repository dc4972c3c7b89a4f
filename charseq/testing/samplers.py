"""Conformance checks for samplers (decoding strategies): the contract and token sampling.

Each check takes the sampler to test as a registry Component, a ``"sampler:name"`` string, or a
factory ``make_sampler(**options)`` returning a :class:`charseq.Sampler`. Checks run it through
:func:`charseq.generate.generate_ids` on a tiny real :class:`~charseq.model.CharModel`
(:func:`tiny_model`), or on one whose next-token logits are fixed (:func:`fixed_logits_model`),
so the support of top-k / top-p / min-p is known. Checks that need an option the sampler lacks
(``temperature``, ``top_k``, ``top_p``, ``min_p``, ``repetition_penalty``, ``num_beams``,
``length_penalty``, ``num_return_sequences``) are skipped. Options mean what they mean in
Hugging Face ``transformers``.

Here: what every sampler returns, and the token-sampling options. The beam-search checks are in
:mod:`charseq.testing.sampler_beams` (and importable from here too).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from charseq.constraints import CompiledConstraints
from charseq.constraints.builtin import CompiledAllowed
from charseq.testing._base import CheckSkipped, Subject, assert_close, register_check, require
from charseq.testing._sampler_harness import (
    EMPTY,
    batch_size,
    require_greedy,
    run_sampler,
    support,
    with_unit_temperature,
)
from charseq.testing.fixtures import PRIME, VOCAB_SIZE, fixed_logits_model, tiny_model
from charseq.testing.sampler_beams import (
    check_beam_length_penalty,
    check_beam_scores,
    check_beam_width_one_is_greedy,
    check_num_return_sequences,
)

__all__ = [
    "check_beam_length_penalty",
    "check_beam_scores",
    "check_beam_width_one_is_greedy",
    "check_deterministic_sampler_ignores_the_generator",
    "check_greedy_is_argmax",
    "check_low_temperature_is_greedy",
    "check_masked_ids_never_sampled",
    "check_min_p_support",
    "check_num_return_sequences",
    "check_repetition_penalty",
    "check_sampled_ids_in_vocab",
    "check_sampler_api",
    "check_sampler_reproducible",
    "check_top_k_one_is_greedy",
    "check_top_k_support",
    "check_top_p_support",
    "fixed_logits_model",
    "tiny_model",
]


@register_check("sampler")
def check_sampler_api(subject: Subject) -> None:
    """The sampler returns a well-formed :class:`charseq.SamplerOutput`.

    For 0, 1 and 6 new tokens, after a prime and after the empty prime, with and without a
    ``torch.Generator``: ids are int64 ``(N, max_new_tokens)`` (``N`` is the batch for a
    :class:`charseq.TokenSampler`), scores are ``None`` or one float per sequence.
    """
    sampler = subject.build_checked()
    model = tiny_model()
    batch = batch_size(subject, 3)
    for steps in (6, 1, 0):
        for prime in (PRIME, EMPTY):
            for seed in (0, None):
                out = run_sampler(sampler, model, steps, prime=prime, num_samples=batch, seed=seed)
                if subject.tags.get("token_sampler"):
                    require(
                        out.ids.shape[0] == batch,
                        f"{batch} sequences gave {out.ids.shape[0]} rows of ids",
                        "a TokenSampler returns one row per sequence of the decoder.",
                    )


def _only(allowed: int, vocab_size: int = VOCAB_SIZE) -> list[float]:
    """Logits where ``allowed`` is the only id of finite logit: any other choice is wrong."""
    return [0.0 if i == allowed else -math.inf for i in range(vocab_size)]


@register_check("sampler")
def check_sampled_ids_in_vocab(subject: Subject) -> None:
    """Every sampled id lies in ``range(vocab_size)``: several seeds, with and without prime,
    and where the last id is the only one of finite logit (an off-by-one is certain to leave
    the vocabulary there)."""
    sampler = subject.build_checked()
    batch = batch_size(subject, 4)
    cases = [(tiny_model(), PRIME), (tiny_model(), EMPTY)]
    cases.append((fixed_logits_model(_only(VOCAB_SIZE - 1)), PRIME))
    for model, prime in cases:
        for seed in range(3):
            for steps in (8, 1):  # 1: the only id is never fed back to the decoder
                ids = run_sampler(
                    sampler, model, steps, prime=prime, num_samples=batch, seed=seed
                ).ids
                outside = sorted(i for i in support(ids) if not 0 <= i < VOCAB_SIZE)
                require(
                    not outside,
                    f"sampled ids {outside} outside range({VOCAB_SIZE})",
                    "pick ids from the last dimension of decoder.logits (its size is the "
                    "vocabulary size).",
                )


_MASKED_FIX = (
    "turn logits into probabilities with softmax (after temperature/top-k/top-p filtering) so "
    "-inf means probability 0, choose among the ids of finite logit only, and never pad "
    "choices with other ids."
)


@register_check("sampler")
def check_masked_ids_never_sampled(subject: Subject) -> None:
    """Ids whose logit is ``-inf`` (probability 0) are never produced.

    Tried where the wrong choice is certain: a single finite logit (the first id, one in the
    middle, the last id) with the rest ``-inf``; several finite logits among ``-inf`` ones; and
    a real model under the decoder's own constraints (an allowed set of one id), where
    choosing another id is an error of generation itself.
    """
    masked = {0, 5, 9}
    several = [-math.inf if i in masked else float(i % 4) for i in range(VOCAB_SIZE)]
    cases = [(several, masked)]
    for allowed in (0, 6, VOCAB_SIZE - 1):
        cases.append((_only(allowed), set(range(VOCAB_SIZE)) - {allowed}))
    sampler = subject.build_checked()
    batch = batch_size(subject, 16)
    for logits, forbidden in cases:
        model = fixed_logits_model(logits)
        for seed in range(3):
            ids = run_sampler(sampler, model, 6, num_samples=batch, seed=seed).ids
            bad = sorted(support(ids) & forbidden)
            finite = [i for i, x in enumerate(logits) if x > -math.inf]
            require(
                not bad,
                f"sampled ids {bad}, whose logits are -inf (only ids {finite} have a finite "
                f"logit in {logits})",
                _MASKED_FIX,
            )
    only = torch.zeros(VOCAB_SIZE, dtype=torch.bool)
    only[3] = True  # one allowed id: the decoder refuses any other
    for steps in (6, 1):
        run_sampler(
            sampler,
            tiny_model(),
            steps,
            num_samples=batch,
            constraints=CompiledConstraints((CompiledAllowed(only),), VOCAB_SIZE),
        )


@register_check("sampler")
def check_sampler_reproducible(subject: Subject) -> None:
    """The same ``torch.Generator`` seed gives the same ids and scores, whatever the global seed.

    The global torch seed is changed between the two runs, so a sampler that draws from the
    global RNG instead of the ``generator`` it is given is caught.
    """
    sampler = subject.build_checked()
    model = tiny_model()
    batch = batch_size(subject, 4)
    for seed in (0, 7):
        runs = []
        for global_seed in (1, 2):
            torch.manual_seed(global_seed)
            runs.append(run_sampler(sampler, model, 8, num_samples=batch, seed=seed))
        (a, b) = runs
        fix = (
            "pass the generator to every random draw (torch.multinomial(..., "
            "generator=generator), torch.rand(..., generator=generator))."
        )
        require(
            torch.equal(a.ids, b.ids),
            f"generator seed {seed} gave {a.ids.tolist()} and then {b.ids.tolist()}",
            fix,
        )
        if a.scores is not None:
            assert_close(
                a.scores,
                b.scores,
                f"scores differ between two runs with generator seed {seed}",
                fix,
            )


@register_check("sampler", requires=("deterministic",))
def check_deterministic_sampler_ignores_the_generator(subject: Subject) -> None:
    """A sampler that says it is ``deterministic`` gives the same ids for any generator seed
    (``generate`` then warns that several samples of one prime are identical)."""
    sampler = subject.build_checked()
    model = tiny_model()
    batch = batch_size(subject, 2)
    first, second = (run_sampler(sampler, model, 8, num_samples=batch, seed=s) for s in (0, 7))
    require(
        torch.equal(first.ids, second.ids),
        f"generator seeds 0 and 7 gave {first.ids.tolist()} and {second.ids.tolist()}",
        "set deterministic = False on a sampler that draws from the generator.",
    )


@register_check("sampler", requires=("greedy",))
def check_greedy_is_argmax(subject: Subject) -> None:
    """A greedy sampler takes the arg-max of the logits at every step."""
    require_greedy(subject, "the greedy sampler", "select logits.argmax(dim=-1).")


@register_check("sampler", requires=("temperature",))
def check_low_temperature_is_greedy(subject: Subject) -> None:
    """As the temperature goes to 0 sampling becomes greedy (tried at the smallest accepted of
    1e-4, 1e-3, 1e-2, on logits whose top two are well apart)."""
    for temperature in (1e-4, 1e-3, 1e-2):
        if not subject.accepts(temperature=temperature):
            continue
        require_greedy(
            subject,
            f"temperature={temperature}",
            "divide the logits by the temperature before the softmax.",
            temperature=temperature,
        )
        return
    raise CheckSkipped(f"{subject.label} accepts no temperature <= 1e-2")


@register_check("sampler", requires=("top_k",))
def check_top_k_one_is_greedy(subject: Subject) -> None:
    """``top_k=1`` keeps only the arg-max, so sampling is greedy."""
    require_greedy(
        subject,
        "top_k=1",
        "keep the k largest logits (torch.topk) and set the others to -inf before sampling.",
        **with_unit_temperature(subject, top_k=1),
    )


def _filtered_draws(subject: Subject, logits: list[float], **option: float) -> Tensor:
    """Ids drawn by the sampler with one filtering ``option`` (and temperature 1) from a model
    whose next-token logits are ``logits``: 4 steps of 64 rows (of 1 for a search sampler)."""
    sampler = subject.build_checked(**with_unit_temperature(subject, **option))
    batch = batch_size(subject, 64)
    return run_sampler(sampler, fixed_logits_model(logits), 4, num_samples=batch, seed=0).ids


_TOP_K_LOGITS = [0.0, 3.0, -1.0, 2.9, 0.5, 2.8, -2.0, 0.1, -0.5, 1.0, 0.2]
_TOP_K_SUPPORT = {1, 3, 5}


@register_check("sampler", requires=("top_k",))
def check_top_k_support(subject: Subject) -> None:
    """With ``top_k=3`` every sample is one of the 3 most likely ids, and more than one occurs."""
    ids = _filtered_draws(subject, _TOP_K_LOGITS, top_k=3)
    outside = sorted(support(ids) - _TOP_K_SUPPORT)
    fix = "keep exactly the k largest logits (torch.topk(logits, k)), mask the rest to -inf."
    require(
        not outside,
        f"top_k=3 sampled ids {outside}, outside the top 3 "
        f"{sorted(_TOP_K_SUPPORT)} of logits {_TOP_K_LOGITS}",
        fix,
    )
    if subject.tags.get("token_sampler"):
        require(
            len(support(ids)) > 1,
            f"top_k=3 sampled only {sorted(support(ids))} in "
            f"{ids.numel()} draws from three nearly equal logits",
            fix,
        )


_TOP_P_PROBS = [0.01, 0.01, 0.45, 0.01, 0.12, 0.01, 0.01, 0.35, 0.01, 0.01, 0.01]
_TOP_P_SUPPORT = {2, 7}


@register_check("sampler", requires=("top_p",))
def check_top_p_support(subject: Subject) -> None:
    """With ``top_p=0.7`` samples come from the smallest set of ids holding 70% of the mass.

    The probabilities are 0.45, 0.35, 0.12 and eight of 0.01, so the nucleus is the first two.
    """
    ids = _filtered_draws(subject, [math.log(p) for p in _TOP_P_PROBS], top_p=0.7)
    outside = sorted(support(ids) - _TOP_P_SUPPORT)
    fix = (
        "sort the probabilities in decreasing order, keep ids while the cumulative "
        "probability before them is below top_p, mask the rest to -inf."
    )
    require(
        not outside,
        f"top_p=0.7 sampled ids {outside}; with probabilities "
        f"{_TOP_P_PROBS} the nucleus is {sorted(_TOP_P_SUPPORT)}",
        fix,
    )
    if subject.tags.get("token_sampler"):
        require(
            len(support(ids)) > 1,
            f"top_p=0.7 sampled only {sorted(support(ids))} in "
            f"{ids.numel()} draws from a nucleus of two ids",
            fix,
        )


_MIN_P_PROBS = [0.05, 0.30, 0.02, 0.20, 0.02, 0.25, 0.04, 0.03, 0.03, 0.03, 0.03]
_MIN_P_SUPPORT = {1, 3, 5}


@register_check("sampler", requires=("min_p",))
def check_min_p_support(subject: Subject) -> None:
    """With ``min_p=0.5`` samples come only from ids at least half as likely as the most likely.

    The probabilities are 0.30, 0.25, 0.20 and eight of at most 0.05, so the cut is 0.15 and the
    support is the first three; a token sampler draws each of them (the cut is relative to the
    largest probability, not an absolute probability).
    """
    ids = _filtered_draws(subject, [math.log(p) for p in _MIN_P_PROBS], min_p=0.5)
    fix = (
        "softmax the (temperature-scaled, top-k/top-p filtered) logits, set to -inf the logits "
        "of ids whose probability is below min_p * the largest probability of the row."
    )
    outside = sorted(support(ids) - _MIN_P_SUPPORT)
    require(
        not outside,
        f"min_p=0.5 sampled ids {outside}; with probabilities {_MIN_P_PROBS} only "
        f"{sorted(_MIN_P_SUPPORT)} are at least 0.5 * 0.30",
        fix,
    )
    if subject.tags.get("token_sampler"):
        require(
            support(ids) == _MIN_P_SUPPORT,
            f"min_p=0.5 sampled only {sorted(support(ids))} in {ids.numel()} draws; every id "
            f"of {sorted(_MIN_P_SUPPORT)} (probability >= 0.15) should occur",
            fix,
        )


_REPEAT_LOGITS = {
    "positive": [50.0 - i for i in range(VOCAB_SIZE)],
    "negative": [-40.0 - i for i in range(VOCAB_SIZE)],
}


def _repeats(ids: Tensor) -> list[list[int]]:
    """The rows of ``ids`` in which some id occurs twice."""
    return [row for row in ids.tolist() if len(set(row)) < len(row)]


@register_check("sampler", requires=("repetition_penalty",))
def check_repetition_penalty(subject: Subject) -> None:
    """A repetition penalty makes the ids a sequence already has less likely (per sequence).

    The model's next-token logits are fixed, 1 apart, all positive (50 .. 40) and then all
    negative (-40 .. -50): Hugging Face's penalty divides a positive logit and multiplies a
    negative one. From the empty prime, ``VOCAB_SIZE`` new ids are drawn (temperature 1):

    - with ``repetition_penalty=1`` (off), ids repeat: the favourite comes back;
    - with a huge penalty (1e9, or the largest accepted of 1e3 and 10) no id ever repeats in a
      sequence while an unused one remains, so every row is a permutation of the vocabulary.
      Each row has its own history: a penalty shared across the batch fails too.
    """
    penalty = next((p for p in (1e9, 1e3, 10.0) if subject.accepts(repetition_penalty=p)), None)
    if penalty is None:
        raise CheckSkipped(f"{subject.label} accepts no repetition_penalty >= 10")
    steps, batch = VOCAB_SIZE, batch_size(subject, 16)
    fix = (
        "keep, per sequence, the ids it has produced; before temperature and filtering divide "
        "their logits by repetition_penalty where positive and multiply them where negative."
    )
    for sign, logits in _REPEAT_LOGITS.items():
        model = fixed_logits_model(logits)
        if subject.accepts(repetition_penalty=1.0):
            off = subject.build_checked(**with_unit_temperature(subject, repetition_penalty=1.0))
            ids = run_sampler(off, model, steps, prime=EMPTY, num_samples=batch, seed=0).ids
            require(
                bool(_repeats(ids)),
                f"repetition_penalty=1 (off) never repeated an id in {ids.tolist()}, on {sign} "
                f"logits {logits} where id 0 is e times likelier than the next",
                "a penalty of 1 must change nothing (x / 1 and x * 1).",
            )
        sampler = subject.build_checked(
            **with_unit_temperature(subject, repetition_penalty=penalty)
        )
        for seed in (0, 1):
            ids = run_sampler(sampler, model, steps, prime=EMPTY, num_samples=batch, seed=seed).ids
            repeated = _repeats(ids)
            require(
                not repeated,
                f"repetition_penalty={penalty:g} on {sign} logits {logits} repeated ids in "
                f"rows {repeated[:3]} while unused ids remained",
                fix,
            )
