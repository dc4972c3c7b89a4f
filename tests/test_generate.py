"""The generation API: generate, stream, priming, and bad requests (checked before any work)."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from charseq import Pipeline
from charseq.builtins.tokenizers import ByteTokenizer, UnknownCharacterError
from charseq.constraints import Constraints, GenerationError, apply_stop
from charseq.generate import STEPPED_PRIME, Decoder, generate_ids
from charseq.interfaces import Sampler, SamplerOutput, TokenSampler
from charseq.pipeline import MAX_NEW_TOKENS
from charseq.streaming import _TextStream
from tests._helpers import SMALL, TEXT, forward_calls, step_calls

SAMPLERS = ["greedy", {"name": "temperature", "temperature": 1.5}, {"name": "beam", "num_beams": 3}]


@pytest.fixture(scope="module")
def pipe():
    return Pipeline.from_spec(SMALL, device="cpu").fit(TEXT)


def test_generate_returns_text_and_lists_for_num_samples(pipe):
    text = pipe.generate("the ", 30, seed=0)
    assert isinstance(text, str) and len(text) == 30 and set(text) <= set(TEXT)
    texts = pipe.generate("the ", 30, seed=0, num_samples=3)
    assert isinstance(texts, list) and len(texts) == 3 and all(len(t) == 30 for t in texts)
    assert pipe.generate("the ", 30, seed=0, num_samples=3) == texts  # seeded
    assert pipe.generate("the ", 0) == ""


@pytest.mark.parametrize("sampler", SAMPLERS, ids=["greedy", "temperature", "beam"])
@pytest.mark.parametrize("stop", [None, ["at"], [".\n", "dog"]])
def test_stream_pieces_join_to_what_generate_returns(pipe, sampler, stop):
    pieces = list(pipe.stream("the ", 60, sampler=sampler, seed=4, stop=stop))
    assert "".join(pieces) == pipe.generate("the ", 60, sampler=sampler, seed=4, stop=stop)
    name = sampler if isinstance(sampler, str) else sampler["name"]
    if name == "beam":
        assert len(pieces) == 1  # the best sequence is known only at the end
    elif stop is None:
        assert len(pieces) == 60  # one piece per character, as it is made


def test_stream_with_constraints_equals_generate(pipe):
    kwargs = {"seed": 2, "acrostic": "tad", "allowed": "tadhe \n", "stop": "\nd"}
    for sampler in SAMPLERS:
        joined = "".join(pipe.stream("", 80, sampler=sampler, **kwargs))
        assert joined == pipe.generate("", 80, sampler=sampler, **kwargs)


def test_stream_checks_the_request_before_the_first_piece(pipe):
    with pytest.raises(GenerationError, match="max_new_tokens"):
        pipe.stream("the", -1)  # raised at the call, not at the first next()
    with pytest.raises(UnknownCharacterError, match="'Z'"):
        pipe.stream("Zoo", 5)


def test_stream_leaves_the_callers_grad_mode_between_pieces(pipe):
    """The sampler's steps run without gradients; the caller's code between pieces runs in
    the caller's own mode, whichever it is."""
    seen = []
    for _piece in pipe.stream("the ", 5, sampler="greedy"):
        seen.append(torch.is_grad_enabled())
    with torch.no_grad():
        for _piece in pipe.stream("the ", 5, sampler="greedy"):
            seen.append(torch.is_grad_enabled())
    assert seen == [True] * 5 + [False] * 5
    assert torch.is_grad_enabled()


def test_closing_a_stream_early_stops_its_worker(pipe):
    before = threading.active_count()
    stream = pipe.stream("the ", 10_000, sampler="greedy")
    first = next(stream)
    stream.close()
    assert len(first) == 1 and threading.active_count() == before


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_cancel_event_ends_a_stream_at_its_next_step(pipe, sampler, monkeypatch):
    # a beam search yields only at its end, so a consumer waiting for that piece cannot close
    # the stream: setting the event (here from another thread) must stop it within a step
    steps = []
    advance = Decoder.advance
    monkeypatch.setattr(Decoder, "advance", lambda self, ids: (steps.append(1), advance(self, ids)))
    cancel = threading.Event()
    stream = pipe.stream("the ", 100_000, sampler=sampler, cancel=cancel)
    threading.Timer(0.3, cancel.set).start()
    pieces = list(stream)  # ends, with no piece after the cancel
    taken = len(steps)
    assert 0 < taken < 100_000 and len("".join(pieces)) <= taken + 1
    if sampler == SAMPLERS[2]:
        assert pieces == []  # the beam's one piece never came
    time.sleep(0.1)
    assert len(steps) == taken  # nothing runs on after it


def test_a_byte_tokenizer_streams_whole_characters():
    text = "café crème, naïve façade. " * 20
    spec = {**SMALL, "tokenizer": {"name": "byte"}, "train": {**SMALL["train"], "steps": 10}}
    pipe = Pipeline.from_spec(spec, device="cpu").fit(text)
    pieces = list(pipe.stream("caf", 40, sampler={"name": "temperature"}, seed=1))
    assert "".join(pieces) == pipe.generate("caf", 40, sampler={"name": "temperature"}, seed=1)
    assert pipe.generate("naïve ", 5, sampler="greedy")  # a non-ASCII prime encodes fine


@settings(max_examples=200, deadline=None)
@given(
    ids=st.lists(st.sampled_from([0x41, 0x80, 0x98, 0x9F, 0xC3, 0xA9, 0xE2, 0xF0]), max_size=24),
    stop=st.sampled_from([(), ("A",), ("\u00e9A",)]),
)
def test_streamed_bytes_join_to_their_decoding(ids, stop):
    """Whatever bytes a model writes (halves of characters, invalid sequences), the pieces are
    the decoded text, cut at a stop string, never text sent twice or taken back."""
    tokenizer = ByteTokenizer()
    stream = _TextStream(tokenizer, Constraints(stop=stop).compile(tokenizer) if stop else None)
    pieces = []
    for token in ids:
        pieces.append(stream.push(token))
        if stream.stopped:
            break
    pieces.append(stream.finish(stream.ids))
    assert "".join(pieces) == apply_stop(tokenizer.decode(stream.ids), stop)


def test_a_long_prime_is_consumed_in_one_fused_pass(pipe):
    with forward_calls(pipe.model) as calls, step_calls(pipe.model) as steps:
        pipe.generate(TEXT[:500], 3, sampler="greedy")
    assert calls == [(1, 500)] and steps == [(1,), (1,)]


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("length", [1, STEPPED_PRIME, STEPPED_PRIME + 1])
def test_a_short_prime_is_stepped_and_starts_where_one_pass_does(pipe, length, batch):
    """On the CPU a prime of at most STEPPED_PRIME ids goes through the inference step id by
    id; the logits and state it leaves equal one pass of the model."""
    prime = torch.tensor(pipe.tokenizer.encode(TEXT[:length]))
    model = pipe.model.eval()
    with torch.no_grad():
        with forward_calls(model) as calls, step_calls(model) as steps:
            decoder = Decoder.from_prime(model, prime, batch)
        logits, state = model(prime.view(1, -1).expand(batch, -1))
    stepped = length <= STEPPED_PRIME
    assert calls == ([] if stepped else [(batch, length)])
    assert steps == ([(batch,)] * length if stepped else [])
    torch.testing.assert_close(decoder.logits, logits[:, -1])
    torch.testing.assert_close(decoder.state, state)


def test_unknown_prime_characters_are_named_with_their_positions_and_remedies(pipe):
    with pytest.raises(UnknownCharacterError) as info:
        pipe.generate("the Zebra!", 5)
    message = str(info.value)
    assert message.startswith("the prime has 3 characters outside the vocabulary")
    assert "'Z' (U+005A) at position 4" in message and "'b' (U+0062) at position 6" in message
    assert "'!' (U+0021) at position 9" in message
    assert "For this text alone: unknown='skip' (drop them) or unknown='replace'." in message
    assert "--unknown" not in message and "'byte' tokenizer" in message
    assert info.value.unknown == {"Z": [4], "b": [6], "!": [9]}


def test_the_unknown_policy_can_be_overridden_per_call(pipe):
    skipped = pipe.generate("the Zcat", 10, sampler="greedy", unknown="skip")
    assert skipped == pipe.generate("the cat", 10, sampler="greedy")
    replaced = pipe.generate("the Zcat", 10, sampler="greedy", unknown="replace")
    assert isinstance(replaced, str) and len(replaced) == 10
    assert pipe.tokenizer.unknown == "error"  # the pipeline's tokenizer is untouched
    with pytest.raises(GenerationError, match="unknown must be"):
        pipe.generate("the", 5, unknown="ignore")


@pytest.mark.parametrize("bad", [-1, MAX_NEW_TOKENS + 1])
def test_max_new_tokens_outside_the_documented_cap(pipe, bad):
    with pytest.raises(GenerationError, match=r"max_new_tokens must be in \[0, 1000000\]"):
        pipe.generate("the", bad)


@pytest.mark.parametrize(("bad", "named"), [(2.5, "float 2.5"), (True, "bool True")])
def test_max_new_tokens_of_another_type(pipe, bad, named):
    with pytest.raises(GenerationError, match=f"max_new_tokens must be an int, got {named}"):
        pipe.generate("the", bad)


def test_decoder_masks_and_emits_without_the_sampler_knowing(pipe):
    from charseq.builtins.samplers import GreedySampler

    compiled = Constraints(allowed="at").compile(pipe.tokenizer)
    seen = []
    prime = torch.tensor(pipe.tokenizer.encode("the "))
    out = generate_ids(
        pipe.model, prime, GreedySampler(), 12, 2, constraints=compiled, on_token=seen.append
    )
    allowed = set(pipe.tokenizer.encode("at"))
    assert set(out.ids.flatten().tolist()) <= allowed
    assert torch.equal(torch.stack(seen, dim=1), out.ids)
    decoder = Decoder.from_prime(pipe.model, prime, 2, compiled)
    assert torch.isinf(decoder.logits).sum() == 2 * (pipe.tokenizer.vocab_size - 2)
    assert not torch.isinf(decoder.raw_logits).any()


def test_decoder_reorders_logits_state_and_constraints_together(pipe):
    """Reordered rows (taken lazily) read back as the rows asked for, after two reorders in a
    row, under constraints, and a step after a reorder starts from the reordered states."""
    compiled = Constraints(allowed="at").compile(pipe.tokenizer)
    prime = torch.tensor(pipe.tokenizer.encode("the "))
    decoder = Decoder.from_prime(pipe.model, prime, 3, compiled)
    decoder.advance(torch.tensor(pipe.tokenizer.encode("tat")))  # three different rows
    raw, masked = decoder.raw_logits.clone(), decoder.logits.clone()
    state = [tuple(s.clone() for s in layer) for layer in decoder.state]
    first, second = torch.tensor([2, 0, 1, 1]), torch.tensor([3, 0, 0])
    decoder.reorder(first)
    decoder.reorder(second)
    rows = first[second]  # [1, 2, 2]
    torch.testing.assert_close(decoder.raw_logits, raw[rows])
    torch.testing.assert_close(decoder.logits, masked[rows])
    assert decoder.batch_size == 3
    ids = torch.tensor(pipe.tokenizer.encode("aaa"))
    decoder.reorder(torch.tensor([1, 0, 2]))  # pending when the step runs
    decoder.advance(ids)
    want, _ = pipe.model.step(ids, [tuple(s[rows[[1, 0, 2]]] for s in layer) for layer in state])
    torch.testing.assert_close(decoder.raw_logits, want)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "mgu"])
def test_one_step_decoding_equals_the_sequence_forward(cell):
    """Generation advances through CharModel.step; it must compute what forward computes."""
    spec = {
        "cell": {"name": cell, "hidden_size": 12, "num_layers": 2},
        "model": {"embedding_size": 5},
    }
    pipe = Pipeline.from_spec(spec, device="cpu")
    pipe.tokenizer.fit("abcdefg")
    torch.manual_seed(0)
    model = pipe.build_model().double().eval()
    ids = torch.randint(0, pipe.tokenizer.vocab_size, (3, 6))  # (B, T)
    expected, expected_state = model(ids)  # (B, T, V)
    state = model.initial_state(3)
    for t in range(ids.shape[1]):
        logits, state = model.step(ids[:, t], state)  # (B, V)
        torch.testing.assert_close(logits, expected[:, t])
    for got, want in zip(state, expected_state, strict=True):
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b)


class PlusOne(TokenSampler):
    """One past the arg-max of what it is given: under constraints, always a forbidden id."""

    def select(self, logits, generator=None):
        return (logits.argmax(-1) + 1) % logits.shape[-1]


class OwnLoopPlusOne(Sampler):
    """The same mistake in a sampler that writes its own loop (not a TokenSampler)."""

    def sample(self, decoder, max_new_tokens, generator=None):
        chosen = []
        for t in range(max_new_tokens):
            ids = (decoder.logits.argmax(-1) + 1) % decoder.logits.shape[-1]
            chosen.append(ids)
            decoder.emit(ids)
            if t + 1 < max_new_tokens:
                decoder.advance(ids)
        return SamplerOutput(torch.stack(chosen, dim=1))


BLAMED = r"the sampler (OwnLoop)?PlusOne \(from tests.test_generate\) chose ids whose logits"


@pytest.mark.parametrize("sampler", [PlusOne, OwnLoopPlusOne])
@pytest.mark.parametrize(
    ("constraints", "length", "samples"),
    [
        ({"allowed": "a"}, 10, 3),
        ({"allowed": "a"}, 1, None),  # the only id is never fed back: checked all the same
        ({"acrostic": "t"}, 10, None),
        ({"allowed": "at \n", "stop": "at"}, 10, 2),
    ],
)
def test_a_sampler_choosing_forbidden_ids_is_blamed(pipe, sampler, constraints, length, samples):
    with pytest.raises(GenerationError, match=BLAMED) as caught:
        pipe.generate("", length, sampler=sampler(), num_samples=samples, **constraints)
    assert "check_masked_ids_never_sampled" in str(caught.value)
    pieces = []
    with pytest.raises(GenerationError, match=BLAMED):
        pieces.extend(pipe.stream("", length, sampler=sampler(), **constraints))
    assert set("".join(pieces)) <= set(constraints.get("allowed", "t"))  # raised before any
    assert pipe.generate("", length, sampler=sampler(), num_samples=samples)  # no constraints


def test_beams_of_probability_zero_take_no_forbidden_id(pipe):
    """Under allowed="a" only one sequence is possible; the other beams have score -inf and
    must not carry (nor feed the decoder) ids the constraints forbid."""
    beam = {"name": "beam", "num_beams": 4, "num_return_sequences": 3}
    texts = pipe.generate("the ", 6, sampler=beam, allowed="a")
    assert texts == ["aaaaaa"] * 3
    assert "".join(pipe.stream("the ", 6, sampler=beam, allowed="a")) == "aaaaaa"
