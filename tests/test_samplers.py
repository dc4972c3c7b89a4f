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
    BeamSampler,
    GreedySampler,
    TemperatureSampler,
    apply_temperature,
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
    assert top_k_filter(logits, 0) is logits and top_k_filter(logits, 5) is logits
    assert torch.equal(top_k_filter(logits, 2)[kept], logits[kept])  # kept values unchanged
    with pytest.raises(ValueError, match="top_k must be >= 0"):
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


@given(logit_rows, st.integers(0, 14))
def test_top_k_keeps_the_k_largest(logits, top_k):
    kept = top_k_filter(logits, top_k).isfinite()
    vocab = logits.shape[-1]
    expected = vocab if top_k == 0 else min(top_k, vocab)
    assert (kept.sum(-1) == expected).all()
    for row, row_kept in zip(logits, kept, strict=True):
        if (~row_kept).any():
            assert row[row_kept].min() >= row[~row_kept].max()


def test_process_logits_applies_temperature_before_top_p():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    # At temperature 1 the top id holds 0.67 of the mass; at 0.1 it holds almost all of it.
    assert process_logits(logits, 1.0, 0, 0.8).isfinite().sum() == 2
    assert process_logits(logits, 0.1, 0, 0.8).isfinite().sum() == 1
    assert process_logits(logits, 1.0, 1, 1.0).isfinite().tolist() == [[True, False, False]]


# -- token samplers -----------------------------------------------------------------------------


@given(logit_rows, st.integers(0, 4), st.floats(0.1, 1.0), st.floats(0.3, 3.0), st.integers(0, 99))
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


# -- options, registration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "path", "message"),
    [
        ("temperature", {"temperature": 0}, "sampler.temperature", "must be > 0.0"),
        ("temperature", {"top_k": -1}, "sampler.top_k", "must be >= 0"),
        ("temperature", {"top_p": 0.0}, "sampler.top_p", "must be > 0.0"),
        ("temperature", {"top_p": 1.5}, "sampler.top_p", "must be <= 1.0"),
        ("temperature", {"top_k": 2.5}, "sampler.top_k", "expected int"),
        ("beam", {"num_beams": 0}, "sampler.num_beams", "must be >= 1"),
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
