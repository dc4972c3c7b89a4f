"""Feature detectors, the interpretable-unit search and gate statistics (charseq.inspect)."""

from __future__ import annotations

import json
import re
import textwrap
import warnings

import attrs
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import charseq
from charseq import Pipeline
from charseq.cli import cli
from charseq.errors import CharseqError, UnknownComponentError
from charseq.inspect import detect, find_units, gate_saturation, record_activations
from charseq.inspect.detectors import BUILTIN
from charseq.inspect.search import threshold_accuracy
from charseq.model import CharModel
from charseq.registry import Registry
from charseq.testing import ElmanCell

CODE = 'x = "a\\"b" # c("\n    f([1], {2}, \'"(\')  # "q"\ny = """doc (\n"x" """ + ""\nAb_9'
# each detector on CODE, one digit per character ("+" for 10 or more)
EXPECTED = {
    "in-quotes": "0000111110000000000000000000000000000000000000000011111111111110000001000000",
    "in-parens": "0000000000000000000000111111111111111000000000000000000000000000000000000000",
    "in-brackets": "0000000000000000000000011000000000000000000000000000000000000000000000000000",
    "in-braces": "0000000000000000000000000000110000000000000000000000000000000000000000000000",
    "depth": "0000000000000000000000122111221111111000000000000000000000000000000000000000",
    "line-position": "123456789+++++++0123456789+++++++++++++++++++0123456789+++0123456789+++01234",
    "line-start": "1000000000000000010000000000000000000000000000100000000000010000000000001000",
    "in-word": "1000010010000100000001001000010000000000000100100000011100001000000000001111",
    "word-position": "1000010010000100000001001000010000000000000100100000012300001000000000001234",
    "indent": "0000000000000000012344444444444444444444444444000000000000000000000000000000",
    "in-comment": "0000000000011111000000000000000000000000111110000000000000000000000000000000",
    "upper": "0000000000000000000000000000000000000000000000000000000000000000000000001000",
    "digit": "0000000000000000000000001000010000000000000000000000000000000000000000000001",
}


def digits(values: np.ndarray) -> str:
    return "".join(str(int(v)) if v < 10 else "+" for v in values)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_builtin_detector_reads_python_as_written_down(name):
    function, _ = BUILTIN[name]
    values = function(CODE)
    assert values.dtype == np.float64 and values.shape == (len(CODE),)
    assert digits(values) == EXPECTED[name], f"\n{CODE!r}\n{digits(values)}"


def test_detectors_are_registered_through_charseqs_entry_point_and_listed():
    registry = Registry.load()
    assert set(registry.names("detector")) >= set(BUILTIN)
    for name in BUILTIN:
        assert registry.get("detector", name).owner.plugin == "builtin_detectors"
    listing = json.loads(CliRunner().invoke(cli, ["plugins", "--json"]).stdout)
    kinds = {(c["kind"], c["name"]) for c in listing["components"]}
    assert ("detector", "in-quotes") in kinds and ("cell", "lstm") in kinds


def inside_url(text: str) -> np.ndarray:
    """Inside an http(s) URL."""
    values = np.zeros(len(text))
    for match in re.finditer(r"https?://\S+", text):
        values[match.start() : match.end()] = 1
    return values


class UrlPlugin:
    @charseq.hookimpl
    def charseq_register_detectors(self, registry):
        registry.add("in-url", inside_url)


def fresh_model(text: str, cells, embedding_size: int, seed: int = 0):
    """A new model of ``cells`` for the characters of ``text``, and its vocabulary."""
    vocab = sorted(set(text))
    torch.manual_seed(seed)
    model = CharModel(len(vocab), embedding_size, cells)
    return model, vocab


def record(model, text, vocab):
    return record_activations(model, [vocab.index(c) for c in text], tokens=list(text), vocab=vocab)


def test_a_plugin_adds_a_detector_in_a_few_lines_and_the_search_uses_it():
    registry = Registry.load()
    registry.register(UrlPlugin(), "urls")
    assert registry.get("detector", "in-url").help == "Inside an http(s) URL."
    text = "see https://example.org/a and http://x.y/z now\n" * 5
    model, vocab = fresh_model(text, [ElmanCell(4, 8)], 4)
    acts = record(model, text, vocab)
    assert list(detect(acts, ["in-url"], registry=registry)["in-url"][3:8]) == [0, 1, 1, 1, 1]
    [finding] = find_units(acts, ["in-url"], top=1, registry=registry)["in-url"]
    assert finding.detector == "in-url" and finding.accuracy is not None


def test_an_unknown_detector_gets_a_did_you_mean():
    model, vocab = fresh_model("ab", [ElmanCell(4, 8)], 4)
    with pytest.raises(UnknownComponentError, match="unknown detector 'in-quote'; did you mean"):
        find_units(record(model, "ab", vocab), ["in-quote"])


def test_a_multi_character_token_takes_the_value_at_its_last_character():
    model, _ = fresh_model("abc", [ElmanCell(4, 8)], 4)
    tokens = ["x = ", '"ab', '"\n']  # 'x = "ab"\n': the string opens in token 1, closes in 2
    acts = record_activations(model, [0, 1, 2], tokens=tokens, vocab=["a", "b", "c"])
    found = detect(acts, ["in-quotes", "line-position"])
    assert found["in-quotes"].tolist() == [0, 1, 0]
    assert found["line-position"].tolist() == [4, 7, 0]
    with pytest.raises(CharseqError, match="do not spell their text"):
        detect(attrs.evolve(acts, text="something else"), ["in-quotes"])
    with pytest.raises(CharseqError, match="one finite number per character"):
        detect(acts, {"short": lambda text: np.zeros(3)})


class QuoteCell(ElmanCell):
    """A plugin cell whose unit ``k`` is the inside-quotes indicator: it flips on each ``"`` of
    its one-hot input (the embedding is the identity); the other units are an Elman cell's."""

    def __init__(self, input_size: int, hidden_size: int, quote_id: int, k: int) -> None:
        super().__init__(input_size, hidden_size)
        self.quote_id, self.k = quote_id, k

    def step(self, x_t, state):
        (h_before,) = state
        h, _ = super().step(x_t, state)
        quote = x_t[:, self.quote_id]  # 1 on a '"'
        inside = h_before[:, self.k] + quote - 2 * h_before[:, self.k] * quote  # XOR
        h = torch.cat([h[:, : self.k], inside[:, None], h[:, self.k + 1 :]], dim=1)
        return h, (h,)


SOURCE = (
    textwrap.dedent("""\
    def greet(name):
        message = "hello, " + name
        print(message, "and welcome")
        return {"name": name, "size": len(message)}


    values = [greet("ada"), greet("grace"), "done"]
    """)
    * 8
)


def test_the_search_finds_a_planted_quote_unit_first_with_correlation_one():
    vocab = sorted(set(SOURCE))
    torch.manual_seed(0)
    model = CharModel(len(vocab), len(vocab), [QuoteCell(len(vocab), 16, vocab.index('"'), k=5)])
    with torch.no_grad():
        model.embedding.weight.copy_(torch.eye(len(vocab)))  # one-hot input
    acts = record(model, SOURCE, vocab)
    [best, second] = find_units(acts, ["in-quotes"], top=2)["in-quotes"]
    assert best.unit == "0:output:5"
    assert best.correlation == pytest.approx(1.0, abs=1e-5)
    assert best.accuracy == 1.0 and 0 < best.threshold <= 1
    assert best.above_chance and best.chance < 0.9
    assert abs(second.correlation) < best.correlation
    assert best.to_dict() == {
        "detector": "in-quotes",
        "unit": "0:output:5",
        "correlation": best.correlation,
        "accuracy": 1.0,
        "threshold": best.threshold,
        "chance": best.chance,
        "above_chance": True,
    }
    json.dumps(best.to_dict())


@pytest.fixture(scope="module")
def python_source() -> str:
    """3000 characters of real Python, quotes and docstrings included."""
    with open(textwrap.__file__, encoding="utf-8") as file:
        return file.read()[2000:5000]


@pytest.mark.parametrize(
    ("cell", "seed"), [("lstm", 0), ("lstm", 1), ("lstm", 2), ("gru", 0), ("rnn", 0)]
)
def test_an_untrained_model_finds_nothing_above_chance_on_quotes(python_source, cell, seed):
    component = charseq.get_registry().get("cell", cell)
    torch.manual_seed(seed)
    cells = [component.factory(16, 64), component.factory(64, 64)]
    vocab = sorted(set(python_source))
    model = CharModel(len(vocab), 16, cells)
    acts = record(model, python_source, vocab)
    assert detect(acts, ["in-quotes"])["in-quotes"].mean() > 0.05  # the text has strings
    [best] = find_units(acts, ["in-quotes"], top=1)["in-quotes"]
    assert not best.above_chance, best


def test_correlations_are_pearsons_and_constant_series_give_zero_without_warnings():
    text = "ab(c)d\n" * 30
    model, vocab = fresh_model(text, [ElmanCell(4, 6)], 4, seed=3)
    acts = record(model, text, vocab)
    acts.traces[0].values[:, 2] = 0.5  # a constant unit
    acts.traces[0].values[:, 3] = 1.0  # one that varies by float32 rounding alone
    acts.traces[0].values[7, 3] = np.nextafter(np.float32(1), np.float32(0))
    detectors = {
        "parens": lambda t: np.array([c in "(c" for c in t], dtype=float),
        "never": lambda t: np.zeros(len(t)),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = find_units(acts, detectors, top=6)
    parens = np.array([c in "(c" for c in text], dtype=float)
    for finding in found["parens"]:
        unit = acts.unit(finding.unit)
        expected = 0.0 if unit.std() < 1e-6 else np.corrcoef(unit, parens)[0, 1]
        assert finding.correlation == pytest.approx(expected, abs=1e-5)
    assert [f.unit for f in found["parens"]][-2:] == ["0:output:2", "0:output:3"]  # 0: last
    assert all(f.correlation == 0 and f.chance == 0 for f in found["never"])
    assert not any(f.above_chance for f in found["never"])
    counts = find_units(acts, ["line-position"], top=1)["line-position"][0]
    assert counts.accuracy is None and counts.threshold is None


def test_threshold_accuracy_takes_the_best_cut_in_the_correlations_direction():
    unit = np.array([0.1, 0.5, 0.9, 0.3])
    assert threshold_accuracy(unit, np.array([0, 1, 1, 0.0])) == (1.0, pytest.approx(0.4))
    assert threshold_accuracy(-unit, np.array([0, 1, 1, 0.0]), above=False) == (
        1.0,
        pytest.approx(-0.4),
    )
    # equal values cannot be told apart: the best cut keeps them together
    accuracy, threshold = threshold_accuracy(np.array([1.0, 1, 2, 2]), np.array([0, 1, 1, 1.0]))
    assert accuracy == 0.75 and threshold in (1.0, 1.5)
    # a unit that says nothing is as good as always guessing the commoner value
    accuracy, _ = threshold_accuracy(np.array([3.0, 3, 3, 3]), np.array([0, 0, 0, 1.0]))
    assert accuracy == 0.75


class GatedCell(ElmanCell):
    """A plugin cell exposing one gate (a sigmoid) and one value that is not (a pre-activation)."""

    def internals(self, x_t, state):
        (h,) = state
        pre = torch.nn.functional.linear(x_t, self.weight_ih, self.bias) + h @ self.weight_hh.T
        return {"s": torch.sigmoid(4 * pre), "a": 4 * pre}


def test_gate_saturation_counts_the_builtin_gates_and_a_plugins():
    text = SOURCE[:300]
    vocab = sorted(set(text))
    lstm = charseq.get_registry().get("cell", "lstm").factory
    torch.manual_seed(0)
    model = CharModel(len(vocab), 8, [lstm(8, 6), GatedCell(6, 5)])
    acts = record(model, text, vocab)
    gates = gate_saturation(acts)
    assert [(g.layer, g.gate) for g in gates] == [(0, "i"), (0, "f"), (0, "o"), (1, "s")]
    s = acts.trace("1:s").values
    np.testing.assert_allclose(gates[-1].left, (s < 0.1).mean(axis=0))
    np.testing.assert_allclose(gates[-1].right, (s > 0.9).mean(axis=0))
    assert gates[-1].left.shape == (5,) and 0 < gates[-1].left_mean < 1
    assert gates[-1].right_mean == pytest.approx(gates[-1].right.mean())
    as_dict = gates[-1].to_dict()
    assert as_dict["gate"] == "s" and len(as_dict["left"]) == 5
    json.dumps(as_dict)
    strict = gate_saturation(acts, low=0.4, high=0.6)
    assert all((a.left >= b.left).all() for a, b in zip(strict, gates, strict=True))
    with pytest.raises(ValueError, match="low < high"):
        gate_saturation(acts, low=0.9, high=0.1)


def test_a_gru_pipelines_gates_are_r_and_z():
    spec = {
        "cell": {"name": "gru", "hidden_size": 8, "num_layers": 2},
        "train": {"steps": 1, "batch_size": 2, "seq_len": 8, "eval_every": 1},
    }
    pipe = Pipeline.from_spec(spec, device="cpu").fit(SOURCE)
    gates = gate_saturation(pipe.activations(SOURCE[:100]))
    assert [(g.layer, g.gate) for g in gates] == [(0, "r"), (0, "z"), (1, "r"), (1, "z")]


@attrs.frozen(kw_only=True)
class LongWordOptions:
    min_length: int = charseq.option(4, help="shortest word that counts", min=1)


def in_long_word(text, min_length=4):
    """Inside a word of at least min_length characters."""
    values = np.zeros(len(text))
    for match in re.finditer(rf"\w{{{min_length},}}", text):
        values[match.start() : match.end()] = 1
    return values


def test_a_detector_with_options_is_called_with_their_defaults():
    class Plugin:
        @charseq.hookimpl
        def charseq_register_detectors(self, registry):
            registry.add("in-long-word", in_long_word, options=LongWordOptions)

    registry = Registry.load()
    registry.register(Plugin(), "long-words")
    text = "a bb ccccc dd eeee\n"
    model, vocab = fresh_model(text, [ElmanCell(4, 8)], 4)
    values = detect(record(model, text, vocab), ["in-long-word"], registry=registry)
    assert digits(values["in-long-word"]) == "0000011111000011110"

    class Bad:
        @charseq.hookimpl
        def charseq_register_detectors(self, registry):
            registry.add("bad", in_long_word, options=TextOption)

    with pytest.raises(TypeError, match="cannot be named 'text'"):
        Registry().register(Bad(), "bad")


@attrs.frozen(kw_only=True)
class TextOption:
    text: str = charseq.option("", help="clashes with the detector's argument")
