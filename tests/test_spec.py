"""Specs: validation messages, and lossless round trips through dict, TOML and JSON."""

from __future__ import annotations

import typing

import attrs
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from charseq import PipelineSpec, SpecError, get_registry
from charseq.options import _Range, option_fields
from charseq.spec import CellLayout, ModelSpec, TrainSpec


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"cell": {"name": "lstn"}},
            "cell.name: unknown cell 'lstn'; did you mean 'lstm'? (available: gru, lstm, ",
        ),
        (
            {"cell": {"hiden_size": 3}},
            "cell.hiden_size: unknown option; did you mean 'hidden_size'?",
        ),
        ({"cell": {"hidden_size": 0}}, "cell.hidden_size: must be >= 1, got 0"),
        ({"cell": {"hidden_size": "12"}}, "cell.hidden_size: expected int, got str '12'"),
        ({"cell": {"hidden_size": 1.5}}, "cell.hidden_size: expected int, got float 1.5"),
        ({"cell": {"dropout": 1.0}}, "cell.dropout: must be < 1.0, got 1.0"),
        ({"cell": {"bias": "yes"}}, "cell.bias: expected bool (true or false), got str 'yes'"),
        ({"cell": "lstm", "celll": {}}, "celll: unknown section; did you mean 'cell'?"),
        ({"tokenizer": "chra"}, "tokenizer.name: unknown tokenizer 'chra'; did you mean 'char'?"),
        ({"tokenizer": {"name": "char", "unknown": "skp"}}, "tokenizer.unknown: must be one of"),
        ({"optimizer": {"name": "adam", "lr": 0}}, "optimizer.lr: must be > 0"),
        ({"optimizer": {"name": "adma"}}, "optimizer.name: unknown optimizer 'adma'; did you mean"),
        (
            {"sampler": {"name": "temperature", "temprature": 2}},
            "sampler.temprature: unknown option",
        ),
        ({"sampler": {"name": "temperature", "top_p": 1.5}}, "sampler.top_p: must be <= 1.0"),
        ({"sampler": {"name": "beam", "num_beams": 0}}, "sampler.num_beams: must be >= 1, got 0"),
        ({"train": {"seq_len": 0}}, "train.seq_len: must be >= 1, got 0"),
        ({"train": {"stepz": 1}}, "train.stepz: unknown option; did you mean 'steps'?"),
        ({"model": []}, "model: expected a table/dict, got list []"),
        ({"cell": {"name": 3}}, "cell.name: expected a name (str), got int 3"),
        (
            {"optimizer": {"name": "adam", "lr": 1e300}},
            "optimizer.lr: must fit in float32 (|value| <= 3.403e+38), the precision of the "
            "weights, got 1e+300",
        ),
        ({"train": {"max_seconds": 10**39}}, "train.max_seconds: must fit in float32"),
        (
            {"train": {"steps": 10**5000}},
            "train.steps: must fit in 64 bits (|value| < 2**63), got an integer of 5001 digits",
        ),
        ({"train": {"steps": "9" * 5000}}, "train.steps: expected int, got str '99999"),
        ({"sampler": {"name": "temperature", "top_k": "x"}}, "sampler.top_k: expected int | none"),
    ],
)
def test_bad_specs_name_the_path_and_the_fix(data, message):
    with pytest.raises(SpecError) as caught:
        PipelineSpec.from_dict(data)
    assert str(caught.value).startswith(message), str(caught.value)


def test_every_mistake_in_a_spec_is_named_at_once():
    data = {
        "cel": {},
        "cell": {"hiden_size": 3, "dropout": "a"},
        "sampler": {"name": "beam", "num_beam": 3},
        "train": {"stepz": 3, "batch_size": "x"},
    }
    with pytest.raises(SpecError) as caught:
        PipelineSpec.from_dict(data)
    error = caught.value
    paths = [problem.path for problem in error.problems]
    assert paths == [
        "cel",
        "cell.hiden_size",
        "cell.dropout",
        "sampler.num_beam",
        "train.stepz",
        "train.batch_size",
    ]
    assert error.path == "cel"  # the first
    assert str(error).startswith("6 problems in the spec:\n  cel: unknown section")
    assert "train.batch_size: expected int, got str 'x'" in str(error)
    # one mistake is reported as itself, not as a list of one
    with pytest.raises(SpecError) as caught:
        PipelineSpec.from_dict({"train": {"stepz": 3}})
    assert caught.value.problems == [caught.value]


def test_defaults_are_char_rnn_like():
    spec = PipelineSpec.from_dict({})
    assert (spec.tokenizer.name, spec.cell.name, spec.optimizer.name) == ("char", "lstm", "adam")
    assert (spec.cell.layout.hidden_size, spec.cell.layout.num_layers) == (128, 2)
    assert (spec.train.batch_size, spec.train.seq_len) == (50, 50)


def test_component_shorthand_and_table_are_equivalent():
    assert PipelineSpec.from_dict({"cell": "gru"}) == PipelineSpec.from_dict(
        {"cell": {"name": "gru"}}
    )


def test_override_keeps_the_cell_layout_when_the_cell_changes():
    spec = PipelineSpec.from_dict({"cell": {"name": "lstm", "hidden_size": 64}})
    changed = spec.override({"cell.name": "gru", "optimizer.lr": 0.01})
    assert changed.cell.name == "gru" and changed.cell.layout.hidden_size == 64
    assert changed.optimizer.options.lr == 0.01
    with pytest.raises(SpecError, match="cell.hidden_size: must be >= 1"):
        spec.override({"cell.hidden_size": 0})


def test_override_into_a_section_set_as_a_whole():
    spec = PipelineSpec.from_dict({})
    with pytest.raises(SpecError) as caught:
        spec.override({"train": 5, "train.steps": 3})
    assert caught.value.path == "train"
    assert "expected a table/dict, got int 5, so train.steps cannot be set in it" in str(
        caught.value
    )
    changed = spec.override({"cell": "gru", "cell.hidden_size": 3})  # a name, then an option
    assert (changed.cell.name, changed.cell.layout.hidden_size) == ("gru", 3)
    changed = spec.override({"sampler": None, "sampler.top_k": 3})  # the default, then an option
    assert (changed.sampler.name, changed.sampler.options.top_k) == ("temperature", 3)


def test_none_is_the_empty_value_of_an_optional_option():
    from charseq.options import build_options, option

    for spelling in ("none", "None", None):
        spec = PipelineSpec.from_dict({"sampler": {"name": "temperature", "top_k": spelling}})
        assert spec.sampler.options.top_k is None

    @attrs.frozen(kw_only=True)
    class Labelled:
        label: str | None = option(None, help="a text option that may be unset")

    # where "none" is a value the option takes, it stays that value
    assert build_options(Labelled, {"label": "none"}, "x").label == "none"
    assert build_options(Labelled, {"label": None}, "x").label is None


def test_a_number_longer_than_python_reads_is_a_spec_error():
    digits = "9" * 5000
    with pytest.raises(SpecError, match="a number of more than 4300 digits"):
        PipelineSpec.from_json('{"train": {"steps": ' + digits + "}}")
    with pytest.raises(SpecError, match="a number of more than 4300 digits"):
        PipelineSpec.from_toml("[train]\nsteps = " + digits + "\n")


def test_files_and_text(tmp_path):
    spec = PipelineSpec.from_dict({"cell": {"name": "gru", "hidden_size": 33}})
    for suffix in (".toml", ".json"):
        path = tmp_path / f"spec{suffix}"
        spec.save(path)
        assert PipelineSpec.from_file(path) == spec
    assert PipelineSpec.from_toml('[cell]\nname = "gru"\nhidden_size = 33\n') == spec
    with pytest.raises(SpecError, match="invalid TOML"):
        PipelineSpec.from_toml("[cell\n")
    with pytest.raises(SpecError, match="cannot read spec"):
        PipelineSpec.from_toml(tmp_path / "missing.toml")
    with pytest.raises(SpecError, match="must end in .toml or .json"):
        PipelineSpec.from_file(tmp_path / "spec.yaml")


# -- round trips over drawn specs -------------------------------------------------------------


def _field_strategy(field: attrs.Attribute) -> st.SearchStrategy:
    """Values of one option field's type, inside its declared range where it has one."""
    tp = field.type
    ranges = [v for v in _validators(field) if isinstance(v, _Range)]
    low = ranges[0].low if ranges else None
    high = ranges[0].high if ranges else None
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return st.sampled_from(typing.get_args(tp))
    if tp is bool:
        return st.booleans()
    if tp is int:
        lo = int(low if low is not None else -1000)
        return st.integers(lo, int(high) if high is not None else lo + 1000)
    if tp is float:
        return st.floats(
            low if low is not None else -1e6,
            high if high is not None else 1e6,
            allow_nan=False,
            allow_subnormal=False,
        )
    if origin is tuple:
        return st.tuples(*(st.floats(0.0, 0.999) for _ in typing.get_args(tp)))
    return st.just(field.default)


def _validators(field: attrs.Attribute) -> list:
    validator = field.validator
    if validator is None:
        return []
    return list(getattr(validator, "_validators", [validator]))


@st.composite
def section(draw, kind: str, extra: type | None = None):
    component = draw(st.sampled_from(get_registry().components(kind)))
    data = {"name": component.name}
    for cls in (component.options, extra):
        if cls is None:
            continue
        for field in option_fields(cls):
            if draw(st.booleans()):
                data[field.name] = draw(_field_strategy(field))
    return data


@st.composite
def plain(draw, cls: type):
    return {f.name: draw(_field_strategy(f)) for f in option_fields(cls) if draw(st.booleans())}


@st.composite
def spec_dicts(draw):
    return {
        "tokenizer": draw(section("tokenizer")),
        "cell": draw(section("cell", CellLayout)),
        "model": draw(plain(ModelSpec)),
        "optimizer": draw(section("optimizer")),
        "sampler": draw(section("sampler")),
        "train": draw(plain(TrainSpec)),
    }


def _valid(data):
    try:
        return PipelineSpec.from_dict(data)
    except SpecError:
        assume(False)


@given(spec_dicts())
def test_round_trip_through_dict_toml_and_json_is_identity(data):
    spec = _valid(data)
    assert PipelineSpec.from_dict(spec.to_dict()) == spec
    assert PipelineSpec.from_toml(spec.to_toml()) == spec
    assert PipelineSpec.from_json(spec.to_json()) == spec
    assert PipelineSpec.from_dict(spec.to_dict()).to_dict() == spec.to_dict()


def test_a_spec_file_is_utf8_and_may_start_with_a_byte_order_mark(tmp_path):
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf[train]\nsteps = 3\n")
    assert PipelineSpec.from_file(bom).train.steps == 3
    other = tmp_path / "latin.toml"
    other.write_bytes("[train] # \u00e9t\u00e9\n".encode("latin-1"))
    with pytest.raises(SpecError, match="a spec file must be UTF-8 text"):
        PipelineSpec.from_file(other)
