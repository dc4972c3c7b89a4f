"""Batches: truncated-BPTT streams, random windows, exact resume, stateful evaluation."""

from __future__ import annotations

import json
import math
import tracemalloc
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from charseq.batches import (
    IGNORE_INDEX,
    Batch,
    RandomWindows,
    StreamBatches,
    evaluate_ids,
    evaluation_batches,
    fit_batch_to_data,
)
from charseq.builtins.cells import GRUCell, LSTMCell
from charseq.corpus import CorpusError, CorpusTooSmallError
from charseq.errors import CharseqError
from charseq.model import CharModel


def json_round_trip(state):
    return json.loads(json.dumps(state))


def quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


# -- fit_batch_to_data --------------------------------------------------------------------------


def test_fit_batch_to_data_keeps_sizes_that_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fit_batch_to_data(4 * 10 + 1, 4, 10) == (4, 10)


def test_fit_batch_to_data_shrinks_batch_then_sequence_with_a_warning():
    with pytest.warns(
        UserWarning, match=r"smaller than one batch of 8x10.*batch_size=3, seq_len=10"
    ):
        assert fit_batch_to_data(35, 8, 10) == (3, 10)
    with pytest.warns(UserWarning, match="batch_size=1, seq_len=6"):
        assert fit_batch_to_data(7, 8, 10) == (1, 6)
    with pytest.warns(UserWarning):
        assert fit_batch_to_data(2, 64, 128) == (1, 1)


def test_fit_batch_to_data_fails_with_the_minimum():
    with pytest.raises(CorpusTooSmallError, match="at least 2") as info:
        fit_batch_to_data(1, 4, 10)
    assert isinstance(info.value, CharseqError)
    with pytest.raises(CorpusTooSmallError, match="needs at least 41"):
        fit_batch_to_data(40, 4, 10, adapt=False)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        fit_batch_to_data(100, 0, 10)
    with pytest.raises(ValueError, match="seq_len must be a positive int"):
        fit_batch_to_data(100, 2, True)


# -- StreamBatches ------------------------------------------------------------------------------


def test_streams_continue_row_by_row_and_reset_at_each_pass():
    n, batch, seq = 1000, 4, 10
    batches = StreamBatches(np.arange(n), batch, seq)
    stream_len = (n - 1) // batch
    assert batches.steps_per_epoch == stream_len // seq == 24
    first = batches.next()
    assert isinstance(first, Batch) and first.reset
    assert first.x.shape == first.y.shape == (batch, seq) and first.x.dtype == torch.int64
    assert first.x[:, 0].tolist() == [0, stream_len, 2 * stream_len, 3 * stream_len]
    assert torch.equal(first.y, first.x + 1)
    previous = first
    for step in range(1, 3 * batches.steps_per_epoch):
        current = batches.next()
        assert current.reset == (step % batches.steps_per_epoch == 0)
        assert torch.equal(current.y, current.x + 1)
        if not current.reset:  # row b continues row b of the batch before
            assert torch.equal(current.x[:, 0], previous.x[:, -1] + 1)
        else:
            assert torch.equal(current.x, first.x)
        previous = current
    assert batches.passes == 3 and batches.position == 0 and batches.epoch == 3.0


def test_epoch_counts_fractions_of_a_pass():
    batches = StreamBatches(np.arange(101), 2, 10)  # 50 per stream: 5 steps a pass
    for _ in range(7):
        batches.next()
    assert batches.epoch == pytest.approx(1.4)


def test_streams_resume_with_the_exact_next_batch():
    ids = np.random.default_rng(0).integers(0, 50, size=5000).astype(np.uint8)
    straight = StreamBatches(ids, 8, 16)
    for _ in range(30):
        straight.next()
    state = json_round_trip(straight.state_dict())
    assert {"position", "passes"} <= state.keys()
    resumed = StreamBatches(ids, 8, 16)
    resumed.load_state_dict(state)
    assert resumed.epoch == straight.epoch
    for _ in range(60):  # across the end of a pass, too
        a, b = straight.next(), resumed.next()
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and a.reset == b.reset


def test_stream_state_from_other_data_is_refused():
    state = StreamBatches(np.arange(1000), 4, 10).state_dict()
    with pytest.raises(CorpusError, match="saved for batch_size=4"):
        StreamBatches(np.arange(1000), 8, 10).load_state_dict(state)
    with pytest.raises(CorpusError, match="saved for tokens=1000"):
        StreamBatches(np.arange(2000), 4, 10).load_state_dict(state)
    with pytest.raises(CorpusError, match="outside this data"):
        StreamBatches(np.arange(1000), 4, 10).load_state_dict({"position": 999, "passes": 0})


@given(n=st.integers(2, 300), batch=st.integers(1, 40), seq=st.integers(1, 60))
def test_any_small_corpus_gives_well_formed_batches(n, batch, seq):
    batches = quiet(StreamBatches, np.arange(n), batch, seq)
    assert batches.steps_per_epoch >= 1
    for _ in range(batches.steps_per_epoch + 1):
        x, y, _ = batches.next()
        assert x.shape == y.shape == (batches.batch_size, batches.seq_len)
        assert torch.equal(y, x + 1) and int(y.max()) < n


def test_streams_accept_tensors_and_refuse_bad_ids():
    batches = StreamBatches(torch.arange(100), 2, 5)
    assert batches.next().x.shape == (2, 5)
    with pytest.raises(CorpusError, match="1-D"):
        StreamBatches(np.zeros((10, 10), dtype=np.int64), 2, 5)
    with pytest.raises(CorpusError, match="integers"):
        StreamBatches(np.zeros(100), 2, 5)
    with pytest.raises(CorpusTooSmallError, match="at least 2"):
        StreamBatches(np.arange(1), 2, 5)


def test_streams_read_a_memory_map_one_batch_at_a_time(tmp_path):
    path = tmp_path / "ids.bin"
    np.random.default_rng(0).integers(0, 255, size=20 << 20, dtype=np.uint8).tofile(path)
    ids = np.memmap(path, dtype=np.uint8, mode="r")
    tracemalloc.start()
    try:
        batches = StreamBatches(ids, 32, 128)
        for _ in range(20):
            batches.next()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # a batch is 32 x 129 int64: 33 KB


# -- RandomWindows ------------------------------------------------------------------------------


def test_random_windows_are_in_bounds_and_seeded():
    ids = np.arange(500)
    windows = RandomWindows(ids, 8, 20, seed=1)
    for _ in range(50):
        x, y, reset = windows.next()
        assert reset and x.shape == y.shape == (8, 20)
        assert torch.equal(y, x + 1) and int(y.max()) < 500 and int(x.min()) >= 0
        assert torch.equal(x[:, 1:], x[:, :-1] + 1)
    again = RandomWindows(ids, 8, 20, seed=1)
    other = RandomWindows(ids, 8, 20, seed=2)
    a, b, c = again.next(), RandomWindows(ids, 8, 20, seed=1).next(), other.next()
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert windows.steps == 50 and windows.epoch == pytest.approx(50 / windows.steps_per_epoch)


def test_random_windows_resume_exactly_after_a_json_round_trip():
    ids = np.arange(10_000)
    straight = RandomWindows(ids, 4, 32, seed=123)
    for _ in range(17):
        straight.next()
    state = json.loads(json.dumps(straight.state_dict()))
    resumed = RandomWindows(ids, 4, 32, seed=999)  # the saved state wins over the seed
    resumed.load_state_dict(state)
    assert resumed.steps == 17
    for _ in range(10):
        assert torch.equal(straight.next().x, resumed.next().x)
    with pytest.raises(CorpusError, match="not a RandomWindows state"):
        resumed.load_state_dict({"steps": 1})


def test_random_windows_shrink_the_window_on_a_tiny_corpus():
    with pytest.warns(UserWarning, match="using seq_len=9"):
        windows = RandomWindows(np.arange(10), 4, 50, seed=0)
    x, y, _ = windows.next()
    assert x.shape == (4, 9) and torch.equal(x[0], torch.arange(9))
    with pytest.raises(CorpusTooSmallError, match="at least 2"):
        RandomWindows(np.arange(1), 4, 50)


# -- evaluation ---------------------------------------------------------------------------------


def scored_targets(n, batch, seq, warmup):
    """Which targets (positions 1..n-1 of arange(n)) the batches score, and checks on the way."""
    scored = []
    rows_seen = None
    context = last = None
    for index, (x, y, reset) in enumerate(
        evaluation_batches(np.arange(n), batch, seq, warmup=warmup)
    ):
        assert reset == (index == 0)
        assert x.shape == y.shape and x.shape[1] <= seq
        keep = y != IGNORE_INDEX
        assert torch.equal(y[keep], (x + 1)[keep])
        if rows_seen is None:
            rows_seen = x.shape[0]
            context = torch.zeros(rows_seen, dtype=torch.long)
        else:  # each row continues itself
            assert x.shape[0] == rows_seen and torch.equal(x[:, 0], last + 1)
        last = x[:, -1]
        for row in range(x.shape[0]):
            for t in range(x.shape[1]):
                if keep[row, t]:
                    # a scored target of a later stream has had its warmup (or the text start)
                    assert context[row] >= min(warmup, int(x[row, t])) or row == 0
                    scored.append(int(y[row, t]))
                context[row] += 1
    return scored, rows_seen


@given(
    n=st.integers(2, 400),
    batch=st.integers(1, 12),
    seq=st.integers(1, 50),
    warmup=st.sampled_from([0, 1, 5, 30]),
)
def test_evaluation_scores_every_target_once_but_at_most_b_minus_1_at_the_end(
    n, batch, seq, warmup
):
    scored, rows = scored_targets(n, batch, seq, warmup)
    assert len(scored) == len(set(scored))  # none twice
    assert sorted(scored) == list(range(1, 1 + len(scored)))  # a prefix of the targets
    assert len(scored) >= (n - 1) - (rows - 1)


def test_evaluation_with_one_stream_equals_one_full_forward():
    torch.manual_seed(0)
    model = CharModel(11, 8, [LSTMCell(8, 16), LSTMCell(16, 16)], dropout=0.3)
    ids = np.random.default_rng(0).integers(0, 11, size=301).astype(np.uint8)
    model.train()
    result = evaluate_ids(model, ids, batch_size=1, seq_len=7, warmup=0)
    assert model.training  # restored
    model.eval()
    with torch.no_grad():
        full = torch.as_tensor(ids, dtype=torch.long)
        logits, _ = model(full[None, :-1])
        expected = torch.nn.functional.cross_entropy(logits[0], full[1:]).item()
    assert result["tokens"] == 300
    assert result["nats"] == pytest.approx(expected, rel=1e-5)
    assert result["bpc"] == pytest.approx(expected / math.log(2), rel=1e-5)


def test_evaluation_with_several_streams_counts_the_scored_tokens():
    torch.manual_seed(0)
    model = CharModel(7, 4, [GRUCell(4, 8)])
    ids = np.random.default_rng(1).integers(0, 7, size=300)
    exact = evaluate_ids(model, ids, batch_size=1, seq_len=64)
    plain = evaluate_ids(model, ids, batch_size=6, seq_len=64, warmup=0)
    warmed = evaluate_ids(model, ids, batch_size=6, seq_len=64, warmup=32)
    assert exact["tokens"] == 299
    assert 299 - 5 <= plain["tokens"] <= 299 and 299 - 5 <= warmed["tokens"] <= 299
    assert abs(warmed["nats"] - exact["nats"]) < 0.05 and abs(plain["nats"] - exact["nats"]) < 0.05
    with pytest.raises(CorpusTooSmallError, match="at least 2"):
        evaluate_ids(model, ids[:1])
    with pytest.raises(ValueError, match="warmup"):
        evaluate_ids(model, ids, warmup=-1)
