"""Scoring a text: per-character log-probabilities, totals, BPC and surprising positions."""

from __future__ import annotations

import math

import pytest
import torch

from charseq import Pipeline
from charseq.builtins.tokenizers import UnknownCharacterError
from charseq.errors import CharseqError
from charseq.generate import Decoder
from tests._helpers import SMALL, TEXT

SAMPLE = "the dog sat on the cat.\n"


@pytest.fixture(scope="module")
def pipe():
    return Pipeline.from_spec(SMALL, device="cpu").fit(TEXT)


def test_totals_agree_with_the_per_character_log_probabilities(pipe):
    score = pipe.score(SAMPLE)
    assert len(score) == len(SAMPLE) == len(score.logprobs)
    assert score.tokens == list(SAMPLE)
    assert math.fsum(score.logprobs) == pytest.approx(-score.total_nats, rel=1e-12)
    assert score.nats == pytest.approx(score.total_nats / len(SAMPLE))
    assert score.bpc == pytest.approx(score.total_nats / math.log(2) / len(SAMPLE))
    assert all(lp <= 0 for lp in score.logprobs)


@torch.no_grad()
def test_each_log_probability_is_the_model_s_step_by_step_prediction(pipe):
    score = pipe.score(SAMPLE, prime="ran far.\n")
    ids = pipe.tokenizer.encode(SAMPLE)
    decoder = Decoder.from_prime(
        pipe.model.eval(), torch.tensor(pipe.tokenizer.encode("ran far.\n"))
    )
    for i, token in enumerate(ids):
        expected = decoder.logits.double().log_softmax(-1)[0, token].item()
        assert score.logprobs[i] == pytest.approx(expected, abs=1e-5)
        decoder.advance(torch.tensor([token]))
    plain = pipe.score(SAMPLE)
    assert plain.logprobs[0] == pytest.approx(-math.log(pipe.tokenizer.vocab_size))  # uniform start


def test_chunked_scoring_equals_one_pass_and_matches_evaluate(pipe):
    text = TEXT[:300]
    whole = pipe.score(text)
    chunked = pipe.score(text, chunk_size=7)
    assert chunked.logprobs == pytest.approx(whole.logprobs, abs=1e-6)
    evaluated = pipe.evaluate(text)  # scores every token but the first
    rest = -math.fsum(whole.logprobs[1:]) / (len(text) - 1)
    assert rest == pytest.approx(evaluated["nats"], rel=1e-5)


def test_the_most_surprising_positions_come_first(pipe):
    score = pipe.score("the cat sat on the hat.\n", top=5)
    found = [s.logprob for s in score.surprising]
    assert found == sorted(found) and len(found) == 5
    assert found == sorted(score.logprobs)[:5]
    for s in score.surprising:
        assert score.tokens[s.position] == s.token and f"[{s.token}]" in s.context
        assert s.probability == pytest.approx(math.exp(s.logprob))
    summary = score.summary()
    assert (
        summary.startswith("24 characters: ") and "BPC" in summary and "most surprising" in summary
    )
    assert score.to_dict()["tokens"] == 24


def test_bad_score_input(pipe):
    with pytest.raises(CharseqError, match="non-empty"):
        pipe.score("")
    with pytest.raises(UnknownCharacterError, match=r"the text to score has 1 character.*'Z'"):
        pipe.score("the Zoo")
    assert len(pipe.score("the Zoo", unknown="skip")) == 6


def test_the_summary_names_word_tokens_as_tokens():
    from charseq import Pipeline

    spec = {
        "tokenizer": {"name": "word"},
        "cell": {"hidden_size": 8, "num_layers": 1},
        "train": {"steps": 2, "batch_size": 2, "seq_len": 8},
    }
    pipe = Pipeline.from_spec(spec, device="cpu").fit("the cat sat on the mat . " * 50)
    first = pipe.score("the cat sat").summary().splitlines()[0]
    assert first.startswith("5 tokens: ") and "nats/token" in first and "bits/token" in first


def test_the_summary_names_byte_tokens_as_bytes():
    from charseq import Pipeline

    spec = {
        "tokenizer": {"name": "byte"},
        "cell": {"hidden_size": 8, "num_layers": 1},
        "train": {"steps": 2, "batch_size": 2, "seq_len": 8},
    }
    pipe = Pipeline.from_spec(spec, device="cpu").fit("春の朝 spring morning. " * 30)
    first = pipe.score("春の").summary().splitlines()[0]  # two characters, six UTF-8 bytes
    assert first.startswith("6 bytes: ") and "nats/byte" in first and "bits/byte" in first
