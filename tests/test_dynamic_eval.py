"""Dynamic evaluation (charseq.dynamic_eval): the stored weights never change, the numbers are
reproducible, lr=0 is static scoring, the model learns a pattern the text repeats, bad options
are refused, and ``charseq eval --dynamic`` prints both numbers."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch

from charseq import Pipeline
from charseq.dynamic_eval import (
    DEFAULTS,
    DynamicEvalError,
    DynamicEvalOptions,
    dynamic_evaluate_ids,
)
from charseq.errors import CharseqError
from charseq.scoring import evaluate_ids
from tests._cli import SMALL as SMALL_FLAGS
from tests._cli import assert_error_line, run
from tests._helpers import SMALL, TEXT, weights

REPEATED = "drag fog cod. " * 80
"""A pattern the model never saw (its letters are all in TEXT's vocabulary), said 80 times."""


@pytest.fixture(scope="module")
def pipe():
    """A small model trained 15 steps on TEXT, with dropout (which scoring must switch off)."""
    spec = {**SMALL, "cell": {**SMALL["cell"], "num_layers": 2, "dropout": 0.3}}
    return Pipeline.from_spec(spec, device="cpu").fit(TEXT)


def test_the_pipeline_s_weights_are_bit_identical_afterwards(pipe):
    before = weights(pipe)
    grads = [None if p.grad is None else p.grad.clone() for p in pipe.model.parameters()]
    was_training = pipe.model.training
    for method in ("rms", "sgd"):
        score = pipe.score(REPEATED, dynamic={"method": method, "lr": 0.05, "decay": 0.0})
        assert score.method == "dynamic"
    after = weights(pipe)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert pipe.model.training == was_training
    for p, grad in zip(pipe.model.parameters(), grads, strict=True):
        assert (p.grad is None) if grad is None else torch.equal(p.grad, grad)


def test_the_same_options_give_the_same_numbers(pipe):
    options = {"segment_len": 20, "seed": 3, "stats_segments": 5}
    first = pipe.score(REPEATED, dynamic=options, stats_text=TEXT)
    again = pipe.score(REPEATED, dynamic=options, stats_text=TEXT)
    assert first.logprobs == again.logprobs
    # the seed picks where in the statistics text the gradient statistics are taken
    other = pipe.score(REPEATED, dynamic={**options, "seed": 4}, stats_text=TEXT)
    assert other.logprobs != first.logprobs


@pytest.mark.parametrize("method", ["rms", "sgd"])
@pytest.mark.parametrize("prime", ["", "the cat "])
def test_lr_zero_is_static_scoring(pipe, method, prime):
    static = pipe.score(REPEATED, prime=prime)
    dynamic = pipe.score(REPEATED, prime=prime, dynamic={"method": method, "lr": 0.0})
    assert static.method == "static" and dynamic.method == "dynamic"
    assert len(dynamic.logprobs) == len(static.logprobs) == len(REPEATED)
    pairs = zip(dynamic.logprobs, static.logprobs, strict=True)
    assert max(abs(a - b) for a, b in pairs) < 1e-6
    ids = torch.tensor(pipe.tokenizer.encode(REPEATED))
    evaluated = evaluate_ids(pipe.model, ids, batch_size=1, seq_len=8192, warmup=0)
    options = DynamicEvalOptions(method=method, lr=0.0)
    adapted = dynamic_evaluate_ids(pipe.model, ids, options)
    assert adapted["tokens"] == evaluated["tokens"] == len(REPEATED) - 1
    assert adapted["nats"] == pytest.approx(evaluated["nats"], abs=1e-6)


def test_dynamic_evaluation_learns_a_pattern_the_text_repeats(pipe):
    """A model trained on TEXT has never seen the pattern: static scoring finds its 40th
    repetition as hard as its first, dynamic evaluation learns it as it reads."""
    static = pipe.score(REPEATED)
    half = len(REPEATED) // 2

    def second_half(score) -> float:  # nats per character over the second half
        return -math.fsum(score.logprobs[half:]) / (len(REPEATED) - half)

    sgd = pipe.score(REPEATED, dynamic={"method": "sgd", "lr": 1.0})
    rms = pipe.score(REPEATED, dynamic={"lr": 5e-3, "segment_len": 20}, stats_text=TEXT)
    assert static.nats > 2.5  # the pattern is new to the model (uniform odds: ln 16 = 2.77)
    assert abs(second_half(static) - static.nats) < 0.05  # and it stays as new
    for score in (sgd, rms):  # (seeds 0-2 of training: gaps of 0.74 nats and more)
        assert score.nats < static.nats - 0.5, (score.nats, static.nats)
        assert second_half(score) < second_half(static) - 0.8, (score.nats, static.nats)


def test_the_score_says_how_it_was_made(pipe):
    score = pipe.score(REPEATED[:120], dynamic=True, top=2)
    assert score.dynamic == DynamicEvalOptions()
    assert score.dynamic.lr == DEFAULTS["rms"]["lr"] and score.dynamic.method == "rms"
    assert "dynamic evaluation (rms, lr 0.0005, decay 0.02, segments of 50)" in score.summary()
    assert score.to_dict()["dynamic"]["segment_len"] == 50
    static = pipe.score(REPEATED[:120])
    assert static.dynamic is None and "dynamic" not in static.to_dict()
    assert "dynamic" not in static.summary()
    sgd = DynamicEvalOptions(method="sgd")
    assert (sgd.lr, sgd.decay) == (DEFAULTS["sgd"]["lr"], DEFAULTS["sgd"]["decay"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "adam"}, "dynamic evaluation's method must be 'rms' or 'sgd', got 'adam'"),
        ({"lr": -1}, "dynamic evaluation's lr must be a finite number >= 0, got -1"),
        ({"lr": math.nan}, "dynamic evaluation's lr must be a finite number >= 0, got nan"),
        ({"decay": "0.1"}, "dynamic evaluation's decay must be a finite number >= 0, got '0.1'"),
        ({"epsilon": 0}, "dynamic evaluation's epsilon must be a finite number > 0, got 0"),
        ({"segment_len": 0}, "dynamic evaluation's segment_len must be an int >= 1, got 0"),
        ({"segment_len": 2.5}, "dynamic evaluation's segment_len must be an int >= 1, got 2.5"),
        ({"stats_segments": True}, "stats_segments must be an int >= 1, got True"),
        ({"seed": "x"}, "dynamic evaluation's seed must be an int, got 'x'"),
        ({"rate": 1}, "unknown dynamic evaluation option(s) 'rate'; the options are method,"),
    ],
)
def test_bad_options_are_refused_before_any_work(pipe, options, message):
    with pytest.raises(DynamicEvalError) as caught:
        pipe.score(REPEATED, dynamic=options)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError | CharseqError)


def test_bad_requests_are_refused(pipe):
    with pytest.raises(DynamicEvalError, match="dynamic must be True, False, a dict"):
        pipe.score(REPEATED, dynamic="yes")
    with pytest.raises(CharseqError, match="stats_text gives the gradient statistics"):
        pipe.score(REPEATED, stats_text=TEXT)
    with pytest.raises(CharseqError, match="stats_text gives the gradient statistics"):
        pipe.score(REPEATED, dynamic={"method": "sgd"}, stats_text=TEXT)
    one = pipe.score("d", dynamic=True)  # one token: the uniform first token alone
    assert one.logprobs == pipe.score("d").logprobs


def checkpoint_digest(run_dir) -> str:
    files = sorted(run_dir.rglob("model.safetensors"))
    assert files
    return hashlib.sha256(b"".join(path.read_bytes() for path in files)).hexdigest()


def test_charseq_eval_dynamic_prints_static_and_dynamic_side_by_side(corpus, tmp_path):
    out = tmp_path / "run"
    train = ["train", "--data", str(corpus), "--out", str(out), "--steps", "2", *SMALL_FLAGS]
    assert run(*train).exit_code == 0
    digest = checkpoint_digest(out)
    static = json.loads(run("eval", str(out), "--split", "all", "--json").output)
    result = run("eval", str(out), "--split", "all", "--dynamic", "--dynamic-lr", "0.001")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["all,", str(static["tokens"]), "characters", "nats/char", "BPC"]
    assert lines[1].split() == ["static", f"{static['nats']:.4f}", f"{static['bpc']:.4f}"]
    assert lines[2].split()[0] == "dynamic"
    assert lines[3] == "dynamic evaluation: rms, lr 0.001, decay 0.02, segments of 50"
    assert lines[4].startswith("gradient statistics: the evaluated text's first segments")
    both = run("eval", str(out), "--dynamic", "--dynamic-method", "sgd", "--json")
    scores = json.loads(both.output)
    assert scores["dynamic"]["tokens"] == scores["tokens"]
    assert scores["dynamic"]["options"]["method"] == "sgd"
    assert scores["dynamic"]["statistics"] is None
    trained = json.loads(run("eval", str(out), "--dynamic", "--json").output)
    assert trained["dynamic"]["statistics"] == "train"
    zero = run("eval", str(out), "--dynamic", "--dynamic-lr", "0", "--json")
    same = json.loads(zero.output)
    assert same["dynamic"]["nats"] == pytest.approx(same["nats"], abs=1e-6)
    assert "note:" not in run("eval", str(out), "--dynamic", "--dynamic-lr", "0").output
    wild = run("eval", str(out), "--dynamic", "--dynamic-method", "sgd", "--dynamic-lr", "50")
    worse = "note: dynamic evaluation scored worse than static: its steps are too large for"
    assert wild.exit_code == 0 and worse in wild.output and "smaller --dynamic-lr" in wild.output
    assert checkpoint_digest(out) == digest  # the checkpoint is never written


def test_charseq_eval_refuses_dynamic_options_without_dynamic_and_a_classifier(corpus, tmp_path):
    out = tmp_path / "run"
    train = ["train", "--data", str(corpus), "--out", str(out), "--steps", "2", *SMALL_FLAGS]
    assert run(*train).exit_code == 0
    result = run("eval", str(out), "--dynamic-lr", "0.1", "--dynamic-seed", "2")
    assert_error_line(result, "--dynamic-lr, --dynamic-seed are options of dynamic evaluation")
    labelled = tmp_path / "labelled.tsv"
    rows = [f"{'(' * (i % 3)}x{')' * (i % 2)}\t{'ab'[i % 2]}" for i in range(40)]
    labelled.write_text("text\tlabel\n" + "\n".join(rows) + "\n", "utf-8")
    classifier = tmp_path / "classifier"
    flags = ["--task", "classify", "--data", str(labelled), "--steps", "2", *SMALL_FLAGS]
    assert run("train", *flags, "--out", str(classifier)).exit_code == 0
    result = run("eval", str(classifier), "--data", str(labelled), "--dynamic")
    assert_error_line(result, "this checkpoint is a classifier")
