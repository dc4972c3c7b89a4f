"""Conformance checks for samplers (decoding strategies).

Each check takes the sampler to test as a registry Component, a ``"sampler:name"`` string, or a
factory ``make_sampler(**options)`` returning a :class:`charseq.Sampler`. Checks run it through
:func:`charseq.generate.generate_ids` on a tiny real :class:`~charseq.model.CharModel`
(:func:`tiny_model`), or on one whose next-token logits are fixed (:func:`fixed_logits_model`),
so the support of top-k / top-p / min-p is known. Checks that need an option the sampler lacks
(``temperature``, ``top_k``, ``top_p``, ``min_p``, ``repetition_penalty``, ``num_beams``,
``length_penalty``, ``num_return_sequences``) are skipped. Options mean what they mean in
Hugging Face ``transformers``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from charseq.constraints import CompiledConstraints, GenerationError
from charseq.generate import Decoder, generate_ids
from charseq.interfaces import Sampler, SamplerOutput
from charseq.model import CharModel
from charseq.testing._base import (
    CheckError,
    CheckSkipped,
    Subject,
    assert_close,
    register_check,
    require,
)
from charseq.testing.cells import ElmanCell

__all__ = [
    "check_beam_length_penalty",
    "check_beam_scores",
    "check_beam_width_one_is_greedy",
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

VOCAB_SIZE = 11
PRIME = torch.tensor([1, 4, 2, 7])
_EMPTY = torch.zeros(0, dtype=torch.long)


def tiny_model(vocab_size: int = VOCAB_SIZE, seed: int = 0, spread: float = 4.0) -> CharModel:
    """A small random :class:`CharModel` (embedding 4, one :class:`ElmanCell` of 8), in eval mode.

    ``spread`` scales the head so the logits of different ids are well apart (arg-max ties and
    near-ties would make "equals greedy" checks depend on rounding).
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CharModel(vocab_size, 4, [ElmanCell(4, 8)])
    with torch.no_grad():
        model.head.weight.mul_(spread)
        model.head.bias.mul_(spread)
    return model.eval()


def fixed_logits_model(logits: Sequence[float] | Tensor) -> CharModel:
    """A :class:`CharModel` whose next-token logits are ``logits`` after any prime and any id."""
    logits = torch.as_tensor(logits, dtype=torch.float32)
    model = tiny_model(len(logits))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(logits)
    return model


# -- helpers --------------------------------------------------------------------------------------


def _make(subject: Subject, **overrides: Any) -> Sampler:
    if overrides:
        subject.try_options(**overrides)
    sampler = subject.build(**overrides)
    require(
        isinstance(sampler, Sampler),
        f"the factory returned {type(sampler).__name__}, not a charseq.Sampler",
        "subclass charseq.TokenSampler (write select) or charseq.Sampler (write sample).",
    )
    return sampler


def _with_unit_temperature(subject: Subject, **overrides: Any) -> dict[str, Any]:
    """Pin temperature to 1 where the sampler has one, so logits mean what they say."""
    if subject.tags.get("temperature"):
        overrides.setdefault("temperature", 1.0)
    return overrides


def _batch(subject: Subject, wanted: int) -> int:
    """Token samplers take any batch; search samplers are run on a single prime."""
    return wanted if subject.tags.get("token_sampler") else 1


def _run(
    sampler: Sampler,
    model: CharModel,
    steps: int,
    *,
    prime: Tensor = PRIME,
    num_samples: int = 1,
    seed: int | None = 0,
    constraints: CompiledConstraints | None = None,
) -> SamplerOutput:
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
        f"{call} returned ids {_describe(ids)}; expected int64 of shape (N, {steps})",
        "ids hold the new ids only (not the prime), one row per sequence, as torch.long.",
    )
    if out.scores is not None:
        scores = out.scores
        require(
            isinstance(scores, Tensor)
            and scores.is_floating_point()
            and tuple(scores.shape) == (ids.shape[0],),
            f"{call} returned scores {_describe(scores)}; expected a float tensor of shape "
            f"({ids.shape[0]},), one per sequence",
            "return one score per row of ids, or scores=None.",
        )
    return out


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"Tensor(shape={tuple(value.shape)}, dtype={value.dtype})"
    return type(value).__name__


@torch.no_grad()
def _argmax_ids(model: CharModel, steps: int, batch: int = 1, prime: Tensor = PRIME) -> Tensor:
    """The greedy continuation, written out: take the arg-max, feed it back."""
    decoder = Decoder.from_prime(model.eval(), prime, batch)
    chosen = []
    for t in range(steps):
        ids = decoder.logits.argmax(dim=-1)  # (B,)
        chosen.append(ids)
        if t + 1 < steps:
            decoder.advance(ids)
    return torch.stack(chosen, dim=1)  # (B, T)


def _require_greedy(subject: Subject, what: str, fix: str, **overrides: Any) -> None:
    sampler = _make(subject, **overrides)
    model = tiny_model(seed=7)  # its greedy path visits 4 different ids, not one fixed point
    batch = _batch(subject, 3)
    for seed in (0, 1):
        got = _run(sampler, model, 10, num_samples=batch, seed=seed).ids
        expected = _argmax_ids(model, 10, batch)
        require(
            torch.equal(got[: expected.shape[0]], expected),
            f"{what} gave ids {got.tolist()}; taking the arg-max at every step gives "
            f"{expected.tolist()}",
            fix,
        )


def _support(ids: Tensor) -> set[int]:
    return set(ids.flatten().tolist())


# -- the checks -----------------------------------------------------------------------------------


@register_check("sampler")
def check_sampler_api(subject: Subject) -> None:
    """The sampler returns a well-formed :class:`charseq.SamplerOutput`.

    For 0, 1 and 6 new tokens, after a prime and after the empty prime, with and without a
    ``torch.Generator``: ids are int64 ``(N, max_new_tokens)`` (``N`` is the batch for a
    :class:`charseq.TokenSampler`), scores are ``None`` or one float per sequence.
    """
    sampler = _make(subject)
    model = tiny_model()
    batch = _batch(subject, 3)
    for steps in (6, 1, 0):
        for prime in (PRIME, _EMPTY):
            for seed in (0, None):
                out = _run(sampler, model, steps, prime=prime, num_samples=batch, seed=seed)
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
    sampler = _make(subject)
    batch = _batch(subject, 4)
    cases = [(tiny_model(), PRIME), (tiny_model(), _EMPTY)]
    cases.append((fixed_logits_model(_only(VOCAB_SIZE - 1)), PRIME))
    for model, prime in cases:
        for seed in range(3):
            for steps in (8, 1):  # 1: the only id is never fed back to the decoder
                ids = _run(sampler, model, steps, prime=prime, num_samples=batch, seed=seed).ids
                outside = sorted(i for i in _support(ids) if not 0 <= i < VOCAB_SIZE)
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
    sampler = _make(subject)
    batch = _batch(subject, 16)
    for logits, forbidden in cases:
        model = fixed_logits_model(logits)
        for seed in range(3):
            ids = _run(sampler, model, 6, num_samples=batch, seed=seed).ids
            bad = sorted(_support(ids) & forbidden)
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
        _run(
            sampler,
            tiny_model(),
            steps,
            num_samples=batch,
            constraints=CompiledConstraints(allowed=only),
        )


@register_check("sampler")
def check_sampler_reproducible(subject: Subject) -> None:
    """The same ``torch.Generator`` seed gives the same ids and scores, whatever the global seed.

    The global torch seed is changed between the two runs, so a sampler that draws from the
    global RNG instead of the ``generator`` it is given is caught.
    """
    sampler = _make(subject)
    model = tiny_model()
    batch = _batch(subject, 4)
    for seed in (0, 7):
        runs = []
        for global_seed in (1, 2):
            torch.manual_seed(global_seed)
            runs.append(_run(sampler, model, 8, num_samples=batch, seed=seed))
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
    sampler = _make(subject)
    model = tiny_model()
    batch = _batch(subject, 2)
    first, second = (_run(sampler, model, 8, num_samples=batch, seed=s) for s in (0, 7))
    require(
        torch.equal(first.ids, second.ids),
        f"generator seeds 0 and 7 gave {first.ids.tolist()} and {second.ids.tolist()}",
        "set deterministic = False on a sampler that draws from the generator.",
    )


@register_check("sampler", requires=("greedy",))
def check_greedy_is_argmax(subject: Subject) -> None:
    """A greedy sampler takes the arg-max of the logits at every step."""
    _require_greedy(subject, "the greedy sampler", "select logits.argmax(dim=-1).")


@register_check("sampler", requires=("temperature",))
def check_low_temperature_is_greedy(subject: Subject) -> None:
    """As the temperature goes to 0 sampling becomes greedy (tried at the smallest accepted of
    1e-4, 1e-3, 1e-2, on logits whose top two are well apart)."""
    for temperature in (1e-4, 1e-3, 1e-2):
        try:
            subject.options(temperature=temperature)
        except (ValueError, TypeError):
            continue
        _require_greedy(
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
    _require_greedy(
        subject,
        "top_k=1",
        "keep the k largest logits (torch.topk) and set the others to -inf before sampling.",
        **_with_unit_temperature(subject, top_k=1),
    )


_TOP_K_LOGITS = [0.0, 3.0, -1.0, 2.9, 0.5, 2.8, -2.0, 0.1, -0.5, 1.0, 0.2]
_TOP_K_SUPPORT = {1, 3, 5}


@register_check("sampler", requires=("top_k",))
def check_top_k_support(subject: Subject) -> None:
    """With ``top_k=3`` every sample is one of the 3 most likely ids, and more than one occurs."""
    sampler = _make(subject, **_with_unit_temperature(subject, top_k=3))
    ids = _run(
        sampler, fixed_logits_model(_TOP_K_LOGITS), 4, num_samples=_batch(subject, 64), seed=0
    ).ids
    outside = sorted(_support(ids) - _TOP_K_SUPPORT)
    fix = "keep exactly the k largest logits (torch.topk(logits, k)), mask the rest to -inf."
    require(
        not outside,
        f"top_k=3 sampled ids {outside}, outside the top 3 "
        f"{sorted(_TOP_K_SUPPORT)} of logits {_TOP_K_LOGITS}",
        fix,
    )
    if subject.tags.get("token_sampler"):
        require(
            len(_support(ids)) > 1,
            f"top_k=3 sampled only {sorted(_support(ids))} in "
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
    sampler = _make(subject, **_with_unit_temperature(subject, top_p=0.7))
    logits = [math.log(p) for p in _TOP_P_PROBS]
    ids = _run(sampler, fixed_logits_model(logits), 4, num_samples=_batch(subject, 64), seed=0).ids
    outside = sorted(_support(ids) - _TOP_P_SUPPORT)
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
            len(_support(ids)) > 1,
            f"top_p=0.7 sampled only {sorted(_support(ids))} in "
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
    sampler = _make(subject, **_with_unit_temperature(subject, min_p=0.5))
    logits = [math.log(p) for p in _MIN_P_PROBS]
    ids = _run(sampler, fixed_logits_model(logits), 4, num_samples=_batch(subject, 64), seed=0).ids
    fix = (
        "softmax the (temperature-scaled, top-k/top-p filtered) logits, set to -inf the logits "
        "of ids whose probability is below min_p * the largest probability of the row."
    )
    outside = sorted(_support(ids) - _MIN_P_SUPPORT)
    require(
        not outside,
        f"min_p=0.5 sampled ids {outside}; with probabilities {_MIN_P_PROBS} only "
        f"{sorted(_MIN_P_SUPPORT)} are at least 0.5 * 0.30",
        fix,
    )
    if subject.tags.get("token_sampler"):
        require(
            _support(ids) == _MIN_P_SUPPORT,
            f"min_p=0.5 sampled only {sorted(_support(ids))} in {ids.numel()} draws; every id "
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
    penalty = next((p for p in (1e9, 1e3, 10.0) if _accepts(subject, repetition_penalty=p)), None)
    if penalty is None:
        raise CheckSkipped(f"{subject.label} accepts no repetition_penalty >= 10")
    steps, batch = VOCAB_SIZE, _batch(subject, 16)
    fix = (
        "keep, per sequence, the ids it has produced; before temperature and filtering divide "
        "their logits by repetition_penalty where positive and multiply them where negative."
    )
    for sign, logits in _REPEAT_LOGITS.items():
        model = fixed_logits_model(logits)
        if _accepts(subject, repetition_penalty=1.0):
            off = _make(subject, **_with_unit_temperature(subject, repetition_penalty=1.0))
            ids = _run(off, model, steps, prime=_EMPTY, num_samples=batch, seed=0).ids
            require(
                bool(_repeats(ids)),
                f"repetition_penalty=1 (off) never repeated an id in {ids.tolist()}, on {sign} "
                f"logits {logits} where id 0 is e times likelier than the next",
                "a penalty of 1 must change nothing (x / 1 and x * 1).",
            )
        sampler = _make(subject, **_with_unit_temperature(subject, repetition_penalty=penalty))
        for seed in (0, 1):
            ids = _run(sampler, model, steps, prime=_EMPTY, num_samples=batch, seed=seed).ids
            repeated = _repeats(ids)
            require(
                not repeated,
                f"repetition_penalty={penalty:g} on {sign} logits {logits} repeated ids in "
                f"rows {repeated[:3]} while unused ids remained",
                fix,
            )


def _accepts(subject: Subject, **overrides: Any) -> bool:
    try:
        subject.options(**overrides)
    except (ValueError, TypeError):
        return False
    return True


@register_check("sampler", requires=("num_beams",))
def check_beam_width_one_is_greedy(subject: Subject) -> None:
    """Beam search with ``num_beams=1`` is greedy decoding."""
    _require_greedy(
        subject,
        "num_beams=1",
        "with one beam keep the single best continuation at every step.",
        num_beams=1,
    )


@register_check("sampler", requires=("num_beams",))
def check_beam_scores(subject: Subject) -> None:
    """Beam scores are finite, best first, one per distinct sequence, and are log-probabilities.

    With ``num_beams=3`` (``num_return_sequences=3`` where the sampler has it, so all three
    beams come back; and ``length_penalty=0`` where it has that, so a score is the plain sum of
    log-probabilities), each score equals the log-probability the model gives its sequence after
    the prime.
    """
    overrides: dict[str, Any] = {"num_beams": 3}
    if subject.tags.get("num_return_sequences"):
        overrides["num_return_sequences"] = 3  # all three beams, so their order is visible
    exact = False
    if subject.tags.get("length_penalty"):
        try:
            subject.options(**overrides, length_penalty=0.0)
            overrides["length_penalty"] = 0.0
            exact = True
        except (ValueError, TypeError):
            pass
    sampler = _make(subject, **overrides)
    model = tiny_model(seed=5, spread=1.0)
    out = _run(sampler, model, 6)
    scores = out.scores
    require(
        scores is not None,
        "num_beams=3 returned scores=None",
        "return each beam's (length-penalised) log-probability in SamplerOutput.scores.",
    )
    require(
        bool(torch.isfinite(scores).all()),
        f"beam scores {scores.tolist()} are not finite",
        "accumulate log_softmax values; never let a beam start from -inf.",
    )
    require(
        bool((scores[:-1] >= scores[1:] - 1e-6).all()),
        f"beam scores {scores.tolist()} are not sorted best first",
        "sort the finished beams by score, highest first.",
    )
    rows = [tuple(r) for r in out.ids.tolist()]
    require(
        len(set(rows)) == len(rows),
        f"beam search returned duplicate sequences {rows}",
        "keep distinct hypotheses: expand every beam, then take the top num_beams of all "
        "(beam, next id) pairs, reordering the decoder with Decoder.reorder.",
    )
    if exact:
        expected = _log_probability(model, out.ids)
        assert_close(
            scores,
            expected,
            "with length_penalty=0 the beam scores are not the "
            "log-probabilities the model gives the returned sequences",
            "add log_softmax(logits)[id] of each chosen id to its beam's score, and "
            "carry scores along when beams are reordered.",
            atol=1e-4,
            rtol=1e-4,
        )


@torch.no_grad()
def _log_probability(model: CharModel, ids: Tensor, prime: Tensor = PRIME) -> Tensor:
    """Sum of log p(id_t | prime, ids_<t) over the generated ids, per row."""
    rows = ids.shape[0]
    full = torch.cat([prime.view(1, -1).expand(rows, -1), ids], dim=1)  # (N, P + T)
    logits, _ = model.eval()(full[:, :-1])  # (N, P + T - 1, V)
    logp = torch.log_softmax(logits[:, prime.numel() - 1 :], dim=-1)  # (N, T, V)
    return logp.gather(2, ids.unsqueeze(-1)).squeeze(-1).sum(dim=1)


_OTHER_PRIME = torch.tensor([9, 3, 3, 0])


@torch.no_grad()
def _sample_primes(sampler: Sampler, model: CharModel, primes: Tensor, steps: int) -> SamplerOutput:
    """Run ``sampler`` on a decoder over several primes ``(B, P)``, one row each."""
    logits, state = model.eval()(primes)  # (B, P, V)
    out = sampler.sample(Decoder(model, state, logits[:, -1]), steps, torch.Generator())
    require(
        isinstance(out, SamplerOutput) and isinstance(out.ids, Tensor),
        f"sample(decoder, max_new_tokens={steps}) returned {type(out).__name__}",
        "return charseq.SamplerOutput(ids, scores).",
    )
    return out


@register_check("sampler", requires=("num_beams", "num_return_sequences"))
def check_num_return_sequences(subject: Subject) -> None:
    """``num_return_sequences=R`` returns the R best sequences of each row, row by row.

    With ``num_beams=3`` and R of 1, 2 and 3, a decoder over two different primes gives ids
    ``(2 * R, T)`` and scores ``(2 * R,)``: the first prime's R sequences, then the second's,
    each block distinct, best first (scores descending) and equal to what that prime gets
    alone. ``num_return_sequences`` larger than ``num_beams`` is rejected when the sampler is
    built.
    """
    model = tiny_model(seed=5, spread=1.0)
    primes = torch.stack([PRIME, _OTHER_PRIME])  # (2, P)
    steps = 5
    for returned in (1, 2, 3):
        sampler = _make(subject, num_beams=3, num_return_sequences=returned)
        out = _sample_primes(sampler, model, primes, steps)
        rows = 2 * returned
        require(
            tuple(out.ids.shape) == (rows, steps)
            and isinstance(out.scores, Tensor)
            and tuple(out.scores.shape) == (rows,),
            f"num_return_sequences={returned} on 2 primes returned ids {_describe(out.ids)} "
            f"and scores {_describe(out.scores)}; expected ({rows}, {steps}) and ({rows},)",
            "return the R best beams of every row: ids (B * R, T), scores (B * R,).",
        )
        for row in range(2):
            block = slice(row * returned, (row + 1) * returned)
            ids, scores = out.ids[block], out.scores[block]
            sequences = [tuple(r) for r in ids.tolist()]
            alone = _sample_primes(sampler, model, primes[row : row + 1], steps)
            require(
                torch.equal(ids, alone.ids),
                f"in a batch, prime {row} got {sequences} at rows {block.start}..{block.stop - 1}"
                f"; alone it gets {alone.ids.tolist()}",
                "order the output row by row: row b's sequences are b * R .. b * R + R - 1 "
                "(reshape (B, R, T) to (B * R, T), not (R, B, T)).",
            )
            require(
                bool((scores[:-1] >= scores[1:] - 1e-6).all()),
                f"prime {row}'s scores {scores.tolist()} are not sorted best first",
                "sort each row's finished beams by score, highest first.",
            )
            require(
                len(set(sequences)) == len(sequences),
                f"prime {row} got duplicate sequences {sequences}",
                "return distinct beams: the top num_return_sequences of the row's num_beams.",
            )
    built = True
    try:
        subject.build(num_beams=2, num_return_sequences=3)
    except (ValueError, TypeError):
        built = False
    require(
        not built,
        "num_beams=2 with num_return_sequences=3 was accepted",
        "reject num_return_sequences > num_beams when the options are built (an attrs "
        "__attrs_post_init__ raising charseq.options.OptionError('num_return_sequences', ...)).",
    )


@register_check("sampler", requires=("num_beams", "length_penalty"))
def check_beam_length_penalty(subject: Subject) -> None:
    """Beam scores are length-penalised as Hugging Face computes them.

    With ``num_beams=3`` (and ``num_return_sequences=3`` where the sampler has it), each score
    is the log-probability the model gives its sequence after the prime divided by
    ``T ** length_penalty``, ``T`` the number of new ids, for ``length_penalty`` 1, 0.5 and 2
    (those accepted) and ``T`` of 1 and 5.
    """
    overrides: dict[str, Any] = {"num_beams": 3}
    if subject.tags.get("num_return_sequences"):
        overrides["num_return_sequences"] = 3
    model = tiny_model(seed=5, spread=1.0)
    tried = []
    for penalty in (1.0, 0.5, 2.0):
        if not _accepts(subject, **overrides, length_penalty=penalty):
            continue
        tried.append(penalty)
        sampler = _make(subject, **overrides, length_penalty=penalty)
        for steps in (1, 5):
            out = _run(sampler, model, steps)
            require(
                out.scores is not None,
                "num_beams=3 returned scores=None",
                "return each sequence's length-penalised log-probability in SamplerOutput.scores.",
            )
            expected = _log_probability(model, out.ids) / steps**penalty
            assert_close(
                out.scores.to(expected.dtype),
                expected,
                f"with length_penalty={penalty} and {steps} new ids the scores are not "
                f"log p(sequence | prime) / {steps} ** {penalty}",
                "divide each beam's summed log-probability by (number of new ids) ** "
                "length_penalty, once, when the beams are returned.",
                atol=1e-4,
                rtol=1e-4,
            )
    if not tried:
        raise CheckSkipped(f"{subject.label} accepts no length_penalty of 1, 0.5 or 2")
