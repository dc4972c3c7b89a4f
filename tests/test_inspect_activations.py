"""Activations: every unit of every layer, recorded for any cell, equal to the model's own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from charseq import Pipeline
from charseq.errors import CharseqError
from charseq.inspect import record_activations
from charseq.model import CharModel
from charseq.testing import ElmanCell

TEXT = 'x = "a" + (b, [c])\n' * 20


def pipeline(cell: str, layers: int = 2) -> Pipeline:
    spec = {
        "cell": {"name": cell, "hidden_size": 12, "num_layers": layers},
        "train": {"steps": 3, "batch_size": 4, "seq_len": 16, "eval_every": 3},
    }
    return Pipeline.from_spec(spec, device="cpu").fit(TEXT)


@pytest.fixture(scope="module")
def lstm() -> Pipeline:
    return pipeline("lstm")


def test_an_lstm_records_h_c_and_its_gates_per_layer(lstm):
    acts = lstm.activations(TEXT[:50])
    assert [(t.key, t.role) for t in acts.traces] == [
        ("0:h", "output"), ("0:c", "state"), ("0:i", "internal"), ("0:f", "internal"),
        ("0:g", "internal"), ("0:o", "internal"),
        ("1:h", "output"), ("1:c", "state"), ("1:i", "internal"), ("1:f", "internal"),
        ("1:g", "internal"), ("1:o", "internal"),
    ]  # fmt: skip
    assert all(t.values.shape == (50, 12) for t in acts.traces)
    assert acts.text == TEXT[:50] and len(acts) == 50 and acts.probs.shape == (50, len(acts.vocab))


def test_the_gates_compose_into_the_recorded_cell_state(lstm):
    acts = lstm.activations(TEXT[:40])
    get = lambda name: acts.trace(f"1:{name}").values.astype(np.float64)  # noqa: E731
    c_before = np.vstack([np.zeros((1, 12)), get("c")[:-1]])  # (T, H): c_{t-1}, zeros first
    np.testing.assert_allclose(get("f") * c_before + get("i") * get("g"), get("c"), atol=1e-5)
    np.testing.assert_allclose(get("o") * np.tanh(get("c")), get("h"), atol=1e-5)


def test_a_gru_records_its_gates_and_the_update_mixes_them():
    acts = pipeline("gru", layers=1).activations(TEXT[:40])
    assert [t.key for t in acts.traces] == ["0:h", "0:r", "0:z", "0:n"]
    h, z, n = (acts.trace(f"0:{k}").values.astype(np.float64) for k in "hzn")
    h_before = np.vstack([np.zeros((1, 12)), h[:-1]])
    np.testing.assert_allclose((1 - z) * n + z * h_before, h, atol=1e-5)


def test_probabilities_and_logprobs_equal_the_model_and_score(lstm):
    text = TEXT[3:60]
    acts = lstm.activations(text, prime="x = ")
    score = lstm.score(text, prime="x = ")
    np.testing.assert_allclose(acts.logprobs, score.logprobs, atol=1e-6)
    np.testing.assert_allclose(acts.surprise, -np.asarray(score.logprobs), atol=1e-6)
    ids = torch.tensor(lstm.tokenizer.encode("x = " + text))
    with torch.no_grad():
        logits, _ = lstm.model.eval()(ids[None])
    np.testing.assert_allclose(acts.probs, logits[0, 4:].softmax(-1).numpy(), atol=1e-6)
    np.testing.assert_allclose(acts.probs.sum(1), 1.0, atol=1e-5)
    top_ids, top_p = acts.top(5)
    assert top_ids.shape == top_p.shape == (len(text), 5)
    assert (np.diff(top_p, axis=1) <= 0).all()
    assert np.allclose(top_p[:, 0], acts.probs.max(1))


def test_without_a_prime_the_first_token_is_scored_under_uniform_odds(lstm):
    acts = lstm.activations("x = a")
    assert acts.logprobs[0] == pytest.approx(-np.log(len(acts.vocab)))


def test_units_are_named_layer_tensor_index(lstm):
    acts = lstm.activations(TEXT[:30])
    np.testing.assert_array_equal(acts.unit("1:c:5"), acts.trace("1:c").values[:, 5])
    with pytest.raises(CharseqError, match="layer:tensor:index"):
        acts.unit("c5")
    with pytest.raises(CharseqError, match="has 12 units"):
        acts.unit("0:h:12")
    with pytest.raises(CharseqError, match="no trace '2:h'.*0:h, 0:c"):
        acts.trace("2:h")


def test_bad_text_gets_a_clear_error(lstm):
    with pytest.raises(CharseqError, match="inspect needs a non-empty text"):
        lstm.activations("")
    with pytest.raises(CharseqError, match="inspect needs a str, got bytes"):
        lstm.activations(b"x = a")
    with pytest.raises(CharseqError, match="outside the vocabulary"):
        lstm.activations("x = QQ")


class WideStateCell(ElmanCell):
    """A plugin cell with an unnamed two-part state, the second (B, 2, H)."""

    def initial_state(self, batch_size, device=None, dtype=None):
        (h,) = super().initial_state(batch_size, device=device, dtype=dtype)
        return h, torch.zeros(batch_size, 2, self.hidden_size, device=device, dtype=dtype)

    def step(self, x_t, state):
        h, (h,) = super().step(x_t, state[:1])
        return h, (h, torch.stack([h, 2 * h], dim=1))  # (B, 2, H)


def test_a_plugin_cell_is_recorded_without_writing_anything():
    torch.manual_seed(0)
    model = CharModel(5, 4, [WideStateCell(4, 3), WideStateCell(3, 3)])
    acts = record_activations(model, [0, 1, 2, 3], tokens=list("abcd"), vocab=list("abcde"))
    assert [(t.key, t.role, t.values.shape) for t in acts.traces] == [
        ("0:output", "output", (4, 3)),
        ("0:state1", "state", (4, 6)),
        ("1:output", "output", (4, 3)),
        ("1:state1", "state", (4, 6)),
    ]
    out = acts.trace("1:output").values
    np.testing.assert_allclose(acts.trace("1:state1").values, np.hstack([out, 2 * out]))


def test_recording_leaves_the_model_in_its_mode(lstm):
    lstm.model.train()
    lstm.activations("x = a")
    assert lstm.model.training
    lstm.model.eval()
