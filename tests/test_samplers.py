"""The built-in samplers and logits processors, driving a real Decoder over a tiny model."""

from __future__ import annotations

import inspect
import itertools

import attrs
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from charseq.builtins import samplers
from charseq.builtins.samplers import (
    PROCESSOR_ORDER,
    BeamSampler,
    GreedySampler,
    TemperatureSampler,
    apply_repetition_penalty,
    apply_temperature,
    min_p_filter,
    process_logits,
    top_k_filter,
    top_p_filter,
)
from charseq.errors import SpecError
from charseq.generate import Decoder, generate_ids
from charseq.interfaces import Cell
from charseq.model import CharModel
from charseq.options import build_options
from charseq.registry import Registry
from charseq.testing import fixed_logits_model


class TanhCell(Cell):
    """A plain Elman cell that writes only ``step`` (the core runs the loop)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.linear = nn.Linear(input_size + hidden_size, hidden_size)

    def initial_state(self, batch_size, device=None, dtype=None):
        return (torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype),)

    def step(self, x_t, state):
        h = torch.tanh(self.linear(torch.cat([x_t, state[0]], dim=-1)))
        return h, (h,)


def tiny_model(seed: int = 0, vocab: int = 7, scale: float = 3.0) -> CharModel:
    torch.manual_seed(seed)
    model = CharModel(vocab, 5, [TanhCell(5, 8)]).double().eval()
    with torch.no_grad():
        model.head.weight.mul_(scale)  # sharper, more varied next-token distributions
    return model


def decoder_for(model: CharModel, primes: list[list[int]]) -> Decoder:
    """A decoder over B different primes (one row each), of equal length."""
    ids = torch.tensor(primes)
    with torch.no_grad():
        logits, state = model(ids)
    return Decoder(model, state, logits[:, -1])


@torch.no_grad()
def sequence_logprob(model: CharModel, prime: list[int], ids: list[int]) -> float:
    """log p(ids | prime) under the model."""
    decoder = decoder_for(model, [prime])
    total = 0.0
    for token in ids:
        total += decoder.logits.log_softmax(-1)[0, token].item()
        decoder.advance(torch.tensor([token]))
    return total


class CountingDecoder(Decoder):
    """Records each call the sampler makes."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.advanced: list[int] = []
        self.reordered: list[int] = []

    def advance(self, ids):
        self.advanced.append(ids.shape[0])
        super().advance(ids)

    def reorder(self, index):
        self.reordered.append(index.shape[0])
        super().reorder(index)


logit_rows = (
    st.integers(1, 3)
    .flatmap(
        lambda batch: st.integers(1, 12).flatmap(
            lambda vocab: st.lists(
                st.lists(
                    st.floats(-20, 20, allow_nan=False).map(lambda x: round(x, 1)),
                    min_size=vocab,
                    max_size=vocab,
                ),
                min_size=batch,
                max_size=batch,
            )
        )
    )
    .map(lambda rows: torch.tensor(rows, dtype=torch.float64))
)


# -- logits processors --------------------------------------------------------------------------


def test_apply_temperature():
    logits = torch.tensor([[1.0, 2.0, -4.0]])
    assert torch.equal(apply_temperature(logits, 0.5), logits * 2)
    assert apply_temperature(logits, 1.0) is logits
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            apply_temperature(logits, bad)


def test_top_k_filter_keeps_exactly_k_lowest_id_first_on_ties():
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    kept = top_k_filter(logits, 2).isfinite()
    assert kept.tolist() == [[False, True, True, False, False], [True, True, False, False, False]]
    assert top_k_filter(logits, None) is logits and top_k_filter(logits, 5) is logits
    assert torch.equal(top_k_filter(logits, 2)[kept], logits[kept])  # kept values unchanged
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        top_k_filter(logits, -1)


def test_top_p_filter_examples():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    assert top_p_filter(logits, 0.5).isfinite().tolist() == [[True, False, False, False]]
    assert top_p_filter(logits, 0.6).isfinite().tolist() == [[True, True, False, False]]
    assert top_p_filter(logits, 0.9).isfinite().tolist() == [[True, True, True, False]]
    assert top_p_filter(logits, 0.01).isfinite().sum() == 1  # the top id always stays
    assert top_p_filter(logits, 1.0) is logits
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
            top_p_filter(logits, bad)


@given(logit_rows, st.floats(0.05, 0.99))
def test_top_p_keeps_the_smallest_set_reaching_p(logits, top_p):
    kept = top_p_filter(logits, top_p).isfinite()
    probs = logits.softmax(-1)
    for row_probs, row_kept in zip(probs, kept, strict=True):
        mass = row_probs[row_kept].sum().item()
        assert mass >= top_p - 1e-9
        # every kept id is at least as likely as every removed one
        if (~row_kept).any():
            assert row_probs[row_kept].min() >= row_probs[~row_kept].max()
        # without its least likely member the set would fall short of p
        assert mass - row_probs[row_kept].min().item() < top_p + 1e-9


@given(logit_rows, st.none() | st.integers(1, 14))
def test_top_k_keeps_the_k_largest(logits, top_k):
    kept = top_k_filter(logits, top_k).isfinite()
    vocab = logits.shape[-1]
    expected = vocab if top_k is None else min(top_k, vocab)
    assert (kept.sum(-1) == expected).all()
    for row, row_kept in zip(logits, kept, strict=True):
        if (~row_kept).any():
            assert row[row_kept].min() >= row[~row_kept].max()


def test_process_logits_applies_temperature_before_top_p():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    # At temperature 1 the top id holds 0.67 of the mass; at 0.1 it holds almost all of it.
    assert process_logits(logits, 1.0, None, 0.8).isfinite().sum() == 2
    assert process_logits(logits, 0.1, None, 0.8).isfinite().sum() == 1
    assert process_logits(logits, 1.0, 1, 1.0).isfinite().tolist() == [[True, False, False]]


# -- min-p, repetition penalty and the processor order -------------------------------------------


def test_min_p_filter_examples():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    # min_p * 0.5 is the cut: 0.2 -> 0.1, 0.5 -> 0.25, 0.7 -> 0.35, 0.99 -> 0.495
    assert min_p_filter(logits, 0.2).isfinite().tolist() == [[True, True, True, False]]
    assert min_p_filter(logits, 0.5).isfinite().tolist() == [[True, True, False, False]]
    assert min_p_filter(logits, 0.7).isfinite().tolist() == [[True, False, False, False]]
    assert min_p_filter(logits, 0.99).isfinite().sum() == 1  # the top id always stays
    assert min_p_filter(logits, 0.0) is logits
    kept = min_p_filter(logits, 0.2).isfinite()
    assert torch.equal(min_p_filter(logits, 0.2)[kept], logits[kept])  # kept values unchanged
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"min_p must be in \[0, 1\)"):
            min_p_filter(logits, bad)


@given(logit_rows, st.floats(0.0, 0.99))
def test_min_p_keeps_ids_at_least_min_p_times_the_top(logits, min_p):
    kept = min_p_filter(logits, min_p).isfinite()
    probs = logits.softmax(-1)
    expected = probs >= min_p * probs.amax(-1, keepdim=True)
    assert torch.equal(kept, expected)
    assert kept.gather(1, logits.argmax(-1, keepdim=True)).all()


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    logits = torch.tensor([[2.0, -1.0, 0.0, 3.0, float("-inf")], [2.0, -1.0, 0.0, 3.0, 1.0]])
    seen = torch.tensor([[True, True, True, False, True], [False, False, False, False, False]])
    out = apply_repetition_penalty(logits, seen, 2.0)
    assert out.tolist() == [[1.0, -2.0, 0.0, 3.0, float("-inf")], logits[1].tolist()]
    # Hugging Face's form: the ids each row has produced, (B, T), repeats allowed
    ids = torch.tensor([[0, 1, 2, 4, 0], [3, 3, 3, 3, 3]])
    by_ids = apply_repetition_penalty(logits, ids, 2.0)
    assert by_ids[0].tolist() == out[0].tolist()
    assert by_ids[1].tolist() == [2.0, -1.0, 0.0, 1.5, 1.0]
    # below 1 favours repeats
    assert apply_repetition_penalty(logits, seen, 0.5)[0, :2].tolist() == [4.0, -0.5]
    assert apply_repetition_penalty(logits, seen, 1.0) is logits
    assert apply_repetition_penalty(logits, None, 3.0) is logits
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="repetition_penalty must be > 0"):
            apply_repetition_penalty(logits, seen, bad)


def test_processor_order_is_documented():
    assert PROCESSOR_ORDER == ("repetition_penalty", "temperature", "top_k", "top_p", "min_p")
    doc = samplers.__doc__
    positions = [doc.index(f":func:`{name}`") for name in _PROCESSORS_BY_NAME.values()]
    assert positions == sorted(positions)  # the module docstring lists them in that order


_PROCESSORS_BY_NAME = {
    "repetition_penalty": "apply_repetition_penalty",
    "temperature": "apply_temperature",
    "top_k": "top_k_filter",
    "top_p": "top_p_filter",
    "min_p": "min_p_filter",
}


def _apply_in_order(order, logits, seen=None, **options):
    """The processors one by one, in ``order``, with the options that are given."""
    defaults = {"repetition_penalty": 1.0, "temperature": 1.0, "top_k": None, "top_p": 1.0}
    options = {**defaults, "min_p": 0.0, **options}
    for name in order:
        if name == "repetition_penalty":
            logits = apply_repetition_penalty(logits, seen, options[name])
        else:
            logits = getattr(samplers, _PROCESSORS_BY_NAME[name])(logits, options[name])
    return logits


def _swapped(first, second):
    order = list(PROCESSOR_ORDER)
    i, j = order.index(first), order.index(second)
    order[i], order[j] = order[j], order[i]
    return order


# Each case puts two processors in a situation where their order decides which ids survive.
ORDER_CASES = {
    # the penalty turns the favourite (id 0, seen) into the runner-up before top-k picks one
    "repetition_penalty<top_k": (
        [[2.0, 1.5]],
        [[True, False]],
        {"repetition_penalty": 2.0, "top_k": 1},
        [[False, True]],
    ),
    # ... and before min-p measures the ids against the top
    "repetition_penalty<min_p": (
        [[2.0, 1.5]],
        [[True, False]],
        {"repetition_penalty": 2.0, "min_p": 0.7},
        [[False, True]],
    ),
    # at temperature 0.1 the top id holds nearly all the mass; at 1 it holds 0.67
    "temperature<top_p": ([[2.0, 1.0, 0.0]], None, {"temperature": 0.1, "top_p": 0.8}, [[1, 0, 0]]),
    # at temperature 0.5 the runner-up is e^-2 = 0.14 of the top; at 1 it is e^-1 = 0.37
    "temperature<min_p": ([[0.0, -1.0]], None, {"temperature": 0.5, "min_p": 0.3}, [[1, 0]]),
    # top-p sees the two survivors of top-k renormalised: 0.57 and 0.43
    "top_k<top_p": (
        [[0.4, 0.3, 0.3]],
        None,
        {"top_k": 2, "top_p": 0.5},
        [[1, 0, 0]],
    ),
    # top-p keeps 0.5 and 0.3 (0.5 < 0.6 before the second); min-p then keeps both
    "top_p<min_p": (
        [[0.5, 0.3, 0.05, 0.05, 0.05, 0.05]],
        None,
        {"top_p": 0.6, "min_p": 0.2},
        [[1, 1, 0, 0, 0, 0]],
    ),
}


@pytest.mark.parametrize("case", list(ORDER_CASES))
def test_processor_order_decides(case):
    rows, seen, options, expected = ORDER_CASES[case]
    first, second = case.split("<")
    logits = torch.tensor(rows, dtype=torch.float64)
    if first in ("top_k", "top_p"):
        logits = logits.log()  # these rows are probabilities
    seen = None if seen is None else torch.tensor(seen)
    got = process_logits(logits, seen=seen, **options).isfinite()
    assert got.tolist() == torch.tensor(expected, dtype=torch.bool).tolist()
    assert torch.equal(got, _apply_in_order(PROCESSOR_ORDER, logits, seen, **options).isfinite())
    # the case is a real test of the order: the other order keeps other ids
    swapped = _apply_in_order(_swapped(first, second), logits, seen, **options).isfinite()
    assert not torch.equal(got, swapped)
    sampler = TemperatureSampler(**options)
    assert torch.equal(sampler.process(logits, seen).isfinite(), got)


@pytest.mark.parametrize(
    ("first", "second"), [("repetition_penalty", "temperature"), ("temperature", "top_k")]
)
def test_the_pairs_whose_order_does_not_matter(first, second):
    """Temperature keeps each logit's sign and the ranking, so these pairs commute."""
    logits = torch.tensor([[2.0, -1.0, 0.5, -3.0, 1.0]], dtype=torch.float64)
    seen = torch.tensor([[True, True, False, False, True]])
    options = {"repetition_penalty": 1.7, "temperature": 0.6, "top_k": 3}
    ours = _apply_in_order(PROCESSOR_ORDER, logits, seen, **options)
    swapped = _apply_in_order(_swapped(first, second), logits, seen, **options)
    torch.testing.assert_close(ours, swapped)


@given(
    logit_rows,
    st.floats(0.5, 3.0),
    st.floats(0.3, 2.0),
    st.none() | st.integers(1, 4),
    st.floats(0.1, 1.0),
    st.floats(0.0, 0.9),
    st.data(),
)
def test_process_logits_is_the_processors_in_processor_order(
    logits, penalty, temperature, top_k, top_p, min_p, data
):
    seen = torch.tensor(
        data.draw(
            st.lists(
                st.lists(st.booleans(), min_size=logits.shape[1], max_size=logits.shape[1]),
                min_size=logits.shape[0],
                max_size=logits.shape[0],
            )
        )
    )
    options = {
        "repetition_penalty": penalty,
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "min_p": min_p,
    }
    expected = _apply_in_order(PROCESSOR_ORDER, logits, seen, **options)
    assert torch.equal(process_logits(logits, seen=seen, **options), expected)


@given(logit_rows, st.floats(0.0, 0.9), st.floats(0.3, 3.0), st.integers(0, 99))
def test_temperature_samples_stay_inside_the_min_p_support(logits, min_p, temperature, seed):
    sampler = TemperatureSampler(temperature=temperature, min_p=min_p)
    support = process_logits(logits, temperature, min_p=min_p).isfinite()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(20):
        ids = sampler.select(logits, generator)
        assert support.gather(1, ids.unsqueeze(1)).all()


def test_min_p_sampler_draws_from_the_renormalised_support():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().expand(20_000, -1)
    ids = TemperatureSampler(min_p=0.4).select(  # cut: 0.2
        logits, torch.Generator().manual_seed(0)
    )
    frequencies = torch.bincount(ids, minlength=4).double() / ids.numel()
    expected = torch.tensor([0.5, 0.3, 0.0, 0.0], dtype=torch.float64) / 0.8
    torch.testing.assert_close(frequencies, expected, atol=0.015, rtol=0)


def test_repetition_penalty_on_a_model_follows_hugging_face():
    """Second-step frequencies after each first id match softmax of the penalised logits."""
    fixed = torch.tensor([2.0, 1.0, -1.0])
    model = fixed_logits_model(fixed)
    sampler = TemperatureSampler(repetition_penalty=3.0)
    generator = torch.Generator().manual_seed(0)
    ids = generate_ids(model, torch.tensor([0]), sampler, 2, 30_000, generator).ids
    for first in range(3):
        rows = ids[ids[:, 0] == first]
        assert len(rows) > 1_000
        frequencies = torch.bincount(rows[:, 1], minlength=3).double() / len(rows)
        penalised = fixed.clone()
        penalised[first] = fixed[first] / 3 if fixed[first] > 0 else fixed[first] * 3
        torch.testing.assert_close(frequencies, penalised.double().softmax(-1), atol=0.02, rtol=0)
    # the prime (id 0) is not penalised: the first step is the plain softmax
    first = torch.bincount(ids[:, 0], minlength=3).double() / len(ids)
    torch.testing.assert_close(first, fixed.double().softmax(-1), atol=0.015, rtol=0)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_huge_repetition_penalty_never_repeats_while_ids_remain(sign):
    vocab = 6
    model = fixed_logits_model([sign * (40.0 + i) for i in range(vocab)])
    sampler = TemperatureSampler(repetition_penalty=1e9)
    generator = torch.Generator().manual_seed(0)
    ids = generate_ids(model, torch.tensor([1, 2]), sampler, vocab, 32, generator).ids
    for row in ids.tolist():
        assert sorted(row) == list(range(vocab))  # each row has its own history
    plain = generate_ids(model, torch.tensor([1, 2]), TemperatureSampler(), vocab, 32, generator)
    assert any(len(set(row)) < vocab for row in plain.ids.tolist())


def test_repetition_penalty_keeps_one_batched_step_per_token_and_emits():
    model = tiny_model()

    class Recording(CountingDecoder):
        emitted: list[list[int]]

        def emit(self, ids):
            self.emitted.append(ids.tolist())

    ids = torch.tensor([[1, 2], [3, 4], [5, 6]])
    with torch.no_grad():
        logits, state = model(ids)
    decoder = Recording(model, state, logits[:, -1])
    decoder.emitted = []
    sampler = TemperatureSampler(repetition_penalty=1.5, top_k=3)
    out = sampler.sample(decoder, 5, torch.Generator().manual_seed(0))
    assert out.ids.shape == (3, 5) and out.scores is None
    assert decoder.advanced == [3] * 4 and decoder.reordered == []
    assert decoder.emitted == out.ids.t().tolist()
    assert sampler.sample(decoder_for(model, [[1]]), 0).ids.shape == (1, 0)


def test_select_without_history_has_no_penalty():
    logits = torch.tensor([[3.0, 1.0, 0.0]]).expand(5_000, -1)
    with_penalty = TemperatureSampler(repetition_penalty=5.0, top_k=2)
    without = TemperatureSampler(top_k=2)
    a = with_penalty.select(logits, torch.Generator().manual_seed(4))
    b = without.select(logits, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    seen = torch.tensor([[True, False, False]]).expand(5_000, -1)
    c = with_penalty.select(logits, torch.Generator().manual_seed(4), seen)
    assert (c == 1).double().mean() > 0.5  # 3 / 5 = 0.6 < 1: id 1 is now the favourite


def test_temperature_sampler_repr_and_attributes():
    sampler = TemperatureSampler(temperature=0.7, min_p=0.05, repetition_penalty=1.2)
    assert (sampler.min_p, sampler.repetition_penalty) == (0.05, 1.2)
    assert "min_p=0.05" in repr(sampler) and "repetition_penalty=1.2" in repr(sampler)


# -- token samplers -----------------------------------------------------------------------------


@given(
    logit_rows,
    st.none() | st.integers(1, 4),
    st.floats(0.1, 1.0),
    st.floats(0.3, 3.0),
    st.integers(0, 99),
)
def test_temperature_samples_stay_inside_the_top_k_top_p_support(
    logits, top_k, top_p, temperature, seed
):
    sampler = TemperatureSampler(temperature=temperature, top_k=top_k, top_p=top_p)
    support = process_logits(logits, temperature, top_k, top_p).isfinite()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(20):
        ids = sampler.select(logits, generator)
        assert ids.dtype == torch.long and ids.shape == (logits.shape[0],)
        assert support.gather(1, ids.unsqueeze(1)).all()
    if top_k:
        assert (support.sum(-1) <= top_k).all()


@given(logit_rows)
def test_greedy_select_is_argmax(logits):
    assert torch.equal(GreedySampler().select(logits), logits.argmax(-1))


@given(logit_rows, st.integers(0, 99))
def test_top_k_one_and_tiny_temperature_are_greedy(logits, seed):
    generator = torch.Generator().manual_seed(seed)
    greedy = GreedySampler().select(logits)
    assert torch.equal(TemperatureSampler(top_k=1).select(logits, generator), greedy)
    assert torch.equal(TemperatureSampler(top_p=1e-6).select(logits, generator), greedy)


def test_temperature_sampler_draws_from_the_softmax():
    logits = torch.tensor([[0.0, 1.0, 2.0]]).expand(20_000, -1)
    generator = torch.Generator().manual_seed(0)
    for temperature in (0.5, 1.0, 2.0):
        ids = TemperatureSampler(temperature=temperature).select(logits, generator)
        frequencies = torch.bincount(ids, minlength=3).double() / ids.numel()
        expected = (logits[0].double() / temperature).softmax(-1)
        torch.testing.assert_close(frequencies, expected, atol=0.015, rtol=0)


def test_gumbel_noise_is_standard_gumbel_times_scale():
    generator = torch.Generator().manual_seed(0)
    noise = samplers.gumbel_noise((200_000,), generator, dtype=torch.float64, scale=2.0)
    assert noise.dtype == torch.float64 and noise.isfinite().all()
    euler_gamma = 0.5772156649
    torch.testing.assert_close(noise.mean().item(), 2.0 * euler_gamma, atol=0.02, rtol=0)
    # Gumbel's CDF is exp(-exp(-x)): half the mass lies below -log(log 2)
    median = -torch.log(torch.log(torch.tensor(2.0, dtype=torch.float64))).item()
    below = (noise / 2.0 < median).double().mean().item()
    torch.testing.assert_close(below, 0.5, atol=0.005, rtol=0)


def test_noise_steps_serves_many_steps_per_draw():
    """Each step gets noise of the logits' shape; steps share draws, and no two are equal."""
    steps = list(samplers.noise_steps((3, 7), 5, torch.Generator().manual_seed(0)))
    assert len(steps) == 5 and all(n.shape == (3, 7) for n in steps)
    assert all(not torch.equal(a, b) for a, b in itertools.combinations(steps, 2))
    # more numbers than one draw holds: several draws, the count still exact
    big = (samplers._NOISE_PER_DRAW // 2) + 1
    assert len(list(samplers.noise_steps((big,), 3))) == 3
    assert list(samplers.noise_steps((3,), 0)) == []


@pytest.mark.parametrize("options", [{"temperature": 0.5}, {"temperature": 2.0, "top_k": 3}])
def test_temperature_steps_draw_each_step_from_the_softmax(options):
    """Over many steps (the noise of several steps drawn at once, several draws), every step's
    ids follow softmax(processed logits), independently of the step before."""
    logits = torch.tensor([0.0, 1.0, 2.0, -1.0])
    model = fixed_logits_model(logits)
    rows, steps = 6_000, 12  # 6000 rows x 4 ids: 2 steps per draw of noise
    decoder = Decoder.from_prime(model, torch.tensor([0]), batch_size=rows)
    sampler = TemperatureSampler(**options)
    ids = sampler.sample(decoder, steps, torch.Generator().manual_seed(0)).ids  # (rows, steps)
    expected = process_logits(logits[None].double(), options["temperature"], options.get("top_k"))
    expected = expected.softmax(-1)[0]
    for t in range(steps):
        frequencies = torch.bincount(ids[:, t], minlength=4).double() / rows
        torch.testing.assert_close(frequencies, expected, atol=0.02, rtol=0)
    # independent steps: pairs (t, t + 1) follow the product of the marginals
    pairs = torch.bincount(ids[:, :-1].reshape(-1) * 4 + ids[:, 1:].reshape(-1), minlength=16)
    joint = pairs.double().view(4, 4) / pairs.sum()
    torch.testing.assert_close(joint, expected[:, None] * expected[None], atol=0.01, rtol=0)


def test_greedy_on_a_decoder_is_argmax_at_each_step():
    model = tiny_model()
    out = GreedySampler().sample(decoder_for(model, [[1, 2], [3, 4]]), 6)
    assert out.ids.shape == (2, 6) and out.scores is None
    for row, prime in enumerate([[1, 2], [3, 4]]):
        decoder = decoder_for(model, [prime])
        for token in out.ids[row]:
            assert decoder.logits.argmax(-1).item() == token.item()
            decoder.advance(token.view(1))


@pytest.mark.parametrize(
    "sampler",
    [
        GreedySampler(),
        TemperatureSampler(),
        TemperatureSampler(temperature=0.7, top_k=3, top_p=0.9),
    ],
    ids=repr,
)
def test_token_samplers_on_a_model_ids_in_vocab_and_seeded(sampler):
    model = tiny_model(vocab=7)
    prime = torch.tensor([1, 2, 3])

    def run(seed):
        generator = torch.Generator().manual_seed(seed)
        return generate_ids(model, prime, sampler, 12, num_samples=4, generator=generator).ids

    ids = run(0)
    assert ids.shape == (4, 12) and ids.dtype == torch.long
    assert ((ids >= 0) & (ids < 7)).all()
    assert torch.equal(ids, run(0))
    if isinstance(sampler, TemperatureSampler):
        assert not torch.equal(ids, run(1))


def test_temperature_top_k_one_equals_greedy_on_a_model():
    model = tiny_model()
    prime = torch.tensor([0, 5])
    greedy = generate_ids(model, prime, GreedySampler(), 15).ids
    generator = torch.Generator().manual_seed(3)
    top1 = generate_ids(model, prime, TemperatureSampler(top_k=1), 15, generator=generator).ids
    assert torch.equal(greedy, top1)


def test_zero_new_tokens():
    model = tiny_model()
    for sampler in (GreedySampler(), TemperatureSampler(), BeamSampler(num_beams=3)):
        out = sampler.sample(decoder_for(model, [[1], [2]]), 0)
        assert out.ids.shape == (2, 0)
    assert BeamSampler().sample(decoder_for(model, [[1]]), 0).scores.tolist() == [0.0]


# -- beam search --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_beam_width_one_is_greedy(seed):
    model = tiny_model(seed)
    prime = [seed % 7, 3]
    greedy = GreedySampler().sample(decoder_for(model, [prime]), 10).ids
    beam = BeamSampler(num_beams=1, length_penalty=0.0).sample(decoder_for(model, [prime]), 10)
    assert torch.equal(beam.ids, greedy)
    expected = sequence_logprob(model, prime, greedy[0].tolist())
    assert beam.scores.item() == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(6))
def test_beam_finds_a_sequence_at_least_as_likely_as_greedy(seed):
    model = tiny_model(seed, vocab=6, scale=1.5)
    prime = [seed % 6]
    greedy = GreedySampler().sample(decoder_for(model, [prime]), 8).ids[0].tolist()
    beam = BeamSampler(num_beams=5, length_penalty=0.0).sample(decoder_for(model, [prime]), 8)
    ids = beam.ids[0].tolist()
    assert beam.scores.item() == pytest.approx(sequence_logprob(model, prime, ids))
    assert beam.scores.item() >= sequence_logprob(model, prime, greedy) - 1e-9


@pytest.mark.parametrize("seed", range(3))
def test_wide_enough_beam_finds_the_most_likely_sequence(seed):
    vocab, steps = 3, 4
    model = tiny_model(seed, vocab=vocab, scale=1.0)
    prime = [1]
    best = max(
        itertools.product(range(vocab), repeat=steps),
        key=lambda ids: sequence_logprob(model, prime, list(ids)),
    )
    # With vocab ** (steps - 1) beams nothing is pruned before the last step: exhaustive.
    beam = BeamSampler(num_beams=vocab ** (steps - 1), length_penalty=0.0)
    out = beam.sample(decoder_for(model, [prime]), steps)
    assert tuple(out.ids[0].tolist()) == best
    assert out.scores.item() == pytest.approx(sequence_logprob(model, prime, list(best)))


def test_beam_rows_are_independent():
    model = tiny_model(1)
    primes = [[0, 1], [4, 4], [6, 2]]
    beam = BeamSampler(num_beams=3, length_penalty=0.7)
    together = beam.sample(decoder_for(model, primes), 9)
    assert together.ids.shape == (3, 9) and together.scores.shape == (3,)
    for row, prime in enumerate(primes):
        alone = beam.sample(decoder_for(model, [prime]), 9)
        assert torch.equal(together.ids[row], alone.ids[0])
        torch.testing.assert_close(together.scores[row], alone.scores[0])


def test_beam_length_penalty_divides_by_length_power():
    model = tiny_model(2)
    plain = BeamSampler(num_beams=3, length_penalty=0.0).sample(decoder_for(model, [[2]]), 6)
    penalised = BeamSampler(num_beams=3, length_penalty=1.5).sample(decoder_for(model, [[2]]), 6)
    assert torch.equal(plain.ids, penalised.ids)  # equal lengths: same ranking
    torch.testing.assert_close(penalised.scores, plain.scores / 6**1.5)
    default = BeamSampler(num_beams=3).sample(decoder_for(model, [[2]]), 6)
    torch.testing.assert_close(default.scores, plain.scores / 6)


def test_beam_advances_all_beams_in_one_batched_step():
    model = tiny_model()
    ids = torch.tensor([[1, 2], [3, 4]])
    with torch.no_grad():
        logits, state = model(ids)
    decoder = CountingDecoder(model, state, logits[:, -1])
    out = BeamSampler(num_beams=4).sample(decoder, 5)
    assert out.ids.shape == (2, 5)
    assert decoder.advanced == [8] * 4  # B * K rows, once per step after the first
    assert decoder.reordered[0] == 8  # the first reorder expands B -> B * K


def test_beam_wider_than_the_vocabulary():
    model = tiny_model(vocab=3)
    out = BeamSampler(num_beams=10).sample(decoder_for(model, [[0]]), 1)
    best = decoder_for(model, [[0]]).logits.argmax(-1)
    assert torch.equal(out.ids[:, 0], best)
    assert torch.isfinite(out.scores).all()
    out = generate_ids(model, torch.tensor([0]), BeamSampler(num_beams=10), 5, num_samples=2)
    assert out.ids.shape == (2, 5) and ((out.ids >= 0) & (out.ids < 3)).all()


def test_beam_float32_model():
    model = tiny_model().float()
    out = generate_ids(model, torch.tensor([1, 2]), BeamSampler(num_beams=2), 4)
    assert out.scores.dtype == torch.float32 and out.ids.shape == (1, 4)


@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
def test_num_return_sequences_row_by_row_best_first(length_penalty):
    model = tiny_model(3, vocab=6, scale=1.5)
    primes = [[0, 1], [4, 4], [5, 2]]
    steps, returned = 5, 3
    beam = BeamSampler(num_beams=4, length_penalty=length_penalty, num_return_sequences=returned)
    out = beam.sample(decoder_for(model, primes), steps)
    assert out.ids.shape == (len(primes) * returned, steps)
    assert out.scores.shape == (len(primes) * returned,)
    best_only = BeamSampler(num_beams=4, length_penalty=length_penalty)
    for row, prime in enumerate(primes):
        block = slice(row * returned, (row + 1) * returned)
        ids, scores = out.ids[block], out.scores[block]
        assert (scores[:-1] >= scores[1:]).all()  # best first
        assert len({tuple(r) for r in ids.tolist()}) == returned  # distinct
        for sequence, score in zip(ids.tolist(), scores.tolist(), strict=True):
            expected = sequence_logprob(model, prime, sequence) / steps**length_penalty
            assert score == pytest.approx(expected)
        alone = beam.sample(decoder_for(model, [prime]), steps)
        assert torch.equal(alone.ids, ids)
        single = best_only.sample(decoder_for(model, [prime]), steps)
        assert torch.equal(single.ids[0], ids[0])  # the first returned is the best beam
        torch.testing.assert_close(single.scores[0], scores[0])


def test_num_return_sequences_equal_to_a_wide_beam_is_the_exhaustive_top():
    vocab, steps = 3, 3
    model = tiny_model(1, vocab=vocab, scale=1.0)
    ranked = sorted(
        itertools.product(range(vocab), repeat=steps),
        key=lambda ids: -sequence_logprob(model, [2], list(ids)),
    )
    width = vocab**steps  # nothing is ever pruned
    beam = BeamSampler(num_beams=width, num_return_sequences=5, length_penalty=0.0)
    out = beam.sample(decoder_for(model, [[2]]), steps)
    assert [tuple(r) for r in out.ids.tolist()] == ranked[:5]


def test_num_return_sequences_through_generate_ids_and_zero_tokens():
    model = tiny_model()
    beam = BeamSampler(num_beams=3, num_return_sequences=2)
    out = generate_ids(model, torch.tensor([1, 2]), beam, 4, num_samples=2)
    assert out.ids.shape == (4, 4) and torch.equal(out.ids[:2], out.ids[2:])
    empty = beam.sample(decoder_for(model, [[1], [2]]), 0)
    assert empty.ids.shape == (4, 0) and empty.scores.tolist() == [0.0] * 4


def test_more_return_sequences_than_the_vocabulary_allows_is_an_error():
    model = tiny_model(vocab=3)
    beam = BeamSampler(num_beams=5, num_return_sequences=4)
    with pytest.raises(ValueError, match=r"num_return_sequences=4 .* only 3 of length 1"):
        beam.sample(decoder_for(model, [[0]]), 1)
    assert beam.sample(decoder_for(model, [[0]]), 2).ids.shape == (4, 2)  # 9 sequences


def test_beam_has_no_early_stopping_option():
    assert "early_stopping" not in {f.name for f in attrs.fields(samplers.BeamOptions)}
    assert "early_stopping" in BeamSampler.__doc__  # documented why


# -- options, registration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "path", "message"),
    [
        ("temperature", {"temperature": 0}, "sampler.temperature", "must be > 0.0"),
        ("temperature", {"top_k": 0}, "sampler.top_k", "must be >= 1"),
        ("temperature", {"top_p": 0.0}, "sampler.top_p", "must be > 0.0"),
        ("temperature", {"top_p": 1.5}, "sampler.top_p", "must be <= 1.0"),
        ("temperature", {"top_k": 2.5}, "sampler.top_k", "expected int"),
        ("temperature", {"temperature": -0.5}, "sampler.temperature", "must be > 0.0"),
        ("temperature", {"min_p": 1.0}, "sampler.min_p", "must be < 1.0"),
        ("temperature", {"min_p": -0.1}, "sampler.min_p", "must be >= 0.0"),
        ("temperature", {"repetition_penalty": 0}, "sampler.repetition_penalty", "must be > 0"),
        ("temperature", {"repetition_penalty": -2.0}, "sampler.repetition_penalty", "> 0"),
        ("temperature", {"min_p": "0.1"}, "sampler.min_p", "expected float"),
        ("beam", {"num_beams": 0}, "sampler.num_beams", "must be >= 1"),
        ("beam", {"num_return_sequences": 0}, "sampler.num_return_sequences", "must be >= 1"),
        (
            "beam",
            {"num_beams": 4, "num_return_sequences": 5},
            "sampler.num_return_sequences",
            "must be <= num_beams, got num_return_sequences=5 with num_beams=4",
        ),
        (
            "beam",
            {"num_return_sequences": 5},  # the default num_beams is 4
            "sampler.num_return_sequences",
            "num_return_sequences=5 with num_beams=4",
        ),
        ("beam", {"num_beam": 2}, "sampler.num_beam", "did you mean 'num_beams'"),
        ("greedy", {"top_k": 2}, "sampler.top_k", "takes none"),
    ],
)
def test_option_errors(name, data, path, message):
    registry = Registry()
    registry.register(samplers, "builtin_samplers")
    with pytest.raises(SpecError, match=message) as caught:
        build_options(registry.get("sampler", name).options, data, "sampler")
    assert caught.value.path == path


def test_direct_construction_is_validated_too():
    with pytest.raises(SpecError, match="temperature.temperature: must be > 0"):
        TemperatureSampler(temperature=-1.0)
    with pytest.raises(SpecError, match="beam.num_beams"):
        BeamSampler(num_beams=0)
    with pytest.raises(SpecError, match="temperature.min_p: must be < 1.0"):
        TemperatureSampler(min_p=1.0)
    with pytest.raises(SpecError, match="temperature.repetition_penalty: must be > 0"):
        TemperatureSampler(repetition_penalty=0.0)
    with pytest.raises(SpecError, match=r"beam.num_return_sequences: .*=3 with num_beams=2"):
        BeamSampler(num_beams=2, num_return_sequences=3)
    BeamSampler(num_beams=3, num_return_sequences=3)  # equal is fine


def test_registered_and_built_from_options():
    registry = Registry()
    registry.register(samplers, "builtin_samplers")
    assert registry.names("sampler") == ["beam", "greedy", "temperature"]
    expected = {"greedy": GreedySampler, "temperature": TemperatureSampler, "beam": BeamSampler}
    for name, cls in expected.items():
        component = registry.get("sampler", name)
        options = build_options(component.options, {}, "sampler")
        assert isinstance(component.factory(**attrs.asdict(options, recurse=False)), cls)
    options = build_options(samplers.TemperatureOptions, {"top_k": 40}, "s")
    sampler = TemperatureSampler(**attrs.asdict(options, recurse=False))
    assert (sampler.temperature, sampler.top_k, sampler.top_p) == (1.0, 40, 1.0)


@pytest.mark.parametrize(
    ("cls", "options"),
    [(TemperatureSampler, samplers.TemperatureOptions), (BeamSampler, samplers.BeamOptions)],
)
def test_signature_defaults_match_the_options_class(cls, options):
    parameters = inspect.signature(cls).parameters
    declared = {f.name: f.default for f in attrs.fields(options)}
    assert {k: p.default for k, p in parameters.items()} == declared


def test_docstring_examples():
    import doctest

    result = doctest.testmod(samplers, extraglobs={"torch": torch})
    assert result.attempted > 0 and result.failed == 0
