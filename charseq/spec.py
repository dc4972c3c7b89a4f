"""The pipeline spec: a frozen attrs tree, read from and written to dicts, TOML and JSON.

A spec names one component per kind, with its options, plus model and training settings::

    tokenizer = "char"

    [cell]
    name = "lstm"
    hidden_size = 512
    num_layers = 3
    dropout = 0.2

    [optimizer]
    name = "adam"
    lr = 2e-3

Every value is checked against the component's options class when the spec is built, before
any data is read or any weight allocated; an error names the exact path, e.g.
``cell.hidden_size: must be >= 1, got 0``.
"""

from __future__ import annotations

import json
import sys
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import attrs
import tomli_w

from charseq.errors import (
    DuplicateComponentError,
    SpecError,
    UnknownComponentError,
    collecting,
    did_you_mean,
)
from charseq.options import OptionError, build_options, option, option_fields, options_to_dict
from charseq.registry import Registry, get_registry


@attrs.frozen(kw_only=True)
class ComponentSpec:
    """A component chosen by name, with its checked options (an instance of its options class)."""

    name: str
    options: Any

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **options_to_dict(self.options)}


@attrs.frozen(kw_only=True)
class CellLayout:
    """How the cells are stacked; every cell plugin gets these."""

    hidden_size: int = option(128, help="features in each layer's output h_t", min=1)
    num_layers: int = option(2, help="number of stacked cells", min=1)
    dropout: float = option(
        0.0,
        help="dropout between stacked layers and before the head",
        min=0.0,
        max=1.0,
        max_exclusive=True,
    )
    weight_drop: float = option(
        0.0,
        help="weight drop (DropConnect, AWD-LSTM): in training, zero each entry of the cells' "
        "recurrent weights with this probability, one mask per batch (the cell must name "
        "its recurrent_weights)",
        min=0.0,
        max=1.0,
        max_exclusive=True,
    )


@attrs.frozen(kw_only=True)
class CellSpec(ComponentSpec):
    """The recurrent cell: its layout (size, depth, dropout) and the plugin's own options."""

    layout: CellLayout

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **options_to_dict(self.layout), **options_to_dict(self.options)}


@attrs.frozen(kw_only=True)
class ModelSpec:
    """The parts of the model around the cells."""

    embedding_size: int = option(64, help="size of the learned character embedding", min=1)
    embedding_dropout: float = option(
        0.0,
        help="dropout on the embedded characters",
        min=0.0,
        max=1.0,
        max_exclusive=True,
    )
    dropout_kind: Literal["standard", "locked"] = option(
        "standard",
        help="'standard': a new dropout mask at every time step; 'locked' (variational): one "
        "mask per sequence for embedding_dropout and cell.dropout (between layers, before "
        "the head)",
    )


def _leaves_training_data(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if instance.val_fraction + instance.test_fraction >= 1.0:
        raise OptionError(
            attribute.name,
            f"val_fraction + test_fraction must leave data to train on, got "
            f"{instance.val_fraction} + {instance.test_fraction}",
        )


@attrs.frozen(kw_only=True)
class TrainSpec:
    """Training settings."""

    steps: int = option(1000, help="optimizer steps to run (the most, with max_seconds)", min=0)
    max_seconds: float = option(
        0.0,
        help="stop after this many seconds of training, evaluations included (0: no limit)",
        min=0.0,
    )
    batch_size: int = option(50, help="parallel streams B of truncated BPTT", min=1)
    seq_len: int = option(50, help="time steps T per batch (truncated BPTT length)", min=1)
    batching: Literal["streams", "windows"] = option(
        "streams",
        help="'streams': B contiguous streams, state carried (char-rnn); "
        "'windows': random windows, state reset (nanoGPT)",
    )
    grad_clip: float = option(5.0, help="clip gradients to this (0: off)", min=0.0)
    clip_mode: Literal["norm", "value"] = option(
        "norm", help="'norm': scale the whole gradient; 'value': clamp each element (char-rnn)"
    )
    schedule: Literal["constant", "epoch-decay", "cosine"] = option(
        "constant", help="learning-rate schedule (see charseq.schedules)"
    )
    warmup_steps: int = option(0, help="cosine: steps of linear warm-up", min=0)
    min_lr_ratio: float = option(0.1, help="cosine: final rate / base rate", min=0.0, max=1.0)
    schedule_steps: int = option(
        0,
        help="cosine: the step the schedule ends at (0: train.steps, which a resume with more "
        "steps stretches); a run trained in parts follows one curve with its total here",
        min=0,
    )
    decay_rate: float = option(
        0.97,
        help="epoch-decay: factor applied at each decay",
        min=0.0,
        max=1.0,
        min_exclusive=True,
    )
    decay_after_epochs: int = option(10, help="epoch-decay: epochs before the first decay", min=0)
    decay_every_epochs: int = option(1, help="epoch-decay: epochs between decays", min=1)
    val_fraction: float = option(
        0.05,
        help="share of the corpus held out for validation",
        min=0.0,
        max=1.0,
        max_exclusive=True,
    )
    test_fraction: float = option(
        0.05,
        help="share of the corpus held out for testing",
        min=0.0,
        max=1.0,
        max_exclusive=True,
        validator=_leaves_training_data,
    )
    eval_every: int = option(
        500, help="steps between evaluations on val (0: only at the end)", min=0
    )
    patience: int = option(
        0, help="stop after this many evaluations without a better val BPC (0: never)", min=0
    )
    checkpoint_every: int = option(
        0,
        help="steps between checkpoints (0: at each evaluation); an evaluation that improves "
        "val BPC saves one too (the best)",
        min=0,
    )
    keep_last: int = option(3, help="checkpoints kept besides the best", min=1)
    divergence_factor: float = option(
        4.0,
        help="a loss above this times the first loss (or NaN) restores the last good state and "
        "halves the rate (0: off)",
        min=0.0,
    )
    precision: Literal["fp32", "bf16"] = option(
        "fp32", help="'bf16': autocast the forward pass to bfloat16 (CUDA only)"
    )
    compile: bool = option(
        False,
        help="torch.compile the training forward pass of cells that run the step loop "
        "(minutes to compile; then near the fused kernels' speed)",
    )
    seed: int = option(
        0, help="random seed for weights, batches and dropout", min=0, max=(1 << 63) - 1
    )


@attrs.frozen(kw_only=True)
class TaskSpec:
    """What the model is trained to do (``task``): the language model, or many-to-one
    classification with its head's options (:mod:`charseq.classify`)."""

    name: Literal["lm", "classify"] = option(
        "lm", help="lm: predict each next character; classify: one label per text"
    )
    pooling: Literal["last", "mean", "max"] = option(
        "last", help="classify: a text's outputs over time as one vector (last, mean, max)"
    )
    dropout: float = option(
        0.0, help="classify: dropout on the pooled vector", min=0.0, max=1.0, max_exclusive=True
    )
    class_weights: Literal["none", "balanced"] = option(
        "none", help="classify: 'balanced' weighs each class's loss by 1 / its frequency"
    )
    metric: Literal["macro_f1", "loss"] = option(
        "macro_f1", help="classify: what picks the best checkpoint and stops early"
    )
    freeze_cells: bool = option(
        False, help="classify: train the head alone, the cells as built (or as init_from gave)"
    )

    def __attrs_post_init__(self) -> None:
        if self.name == "lm":
            for field in attrs.fields(TaskSpec)[1:]:
                if getattr(self, field.name) != field.default:
                    raise OptionError(
                        field.name,
                        f"applies to task 'classify' only; the language model (task 'lm') has "
                        f"no classification head, so {field.name}="
                        f"{getattr(self, field.name)!r} would be ignored",
                    )

    def to_dict(self) -> dict[str, Any]:
        """The options that apply: the language model's task is its name alone."""
        return options_to_dict(self) if self.name == "classify" else {"name": self.name}


TOO_MANY_DIGITS = (
    f"a number of more than {sys.get_int_max_str_digits()} digits, more than Python reads; "
    "no option takes one (integers are 64-bit, real numbers float32)"
)

_SECTIONS = ("task", "tokenizer", "cell", "model", "optimizer", "sampler", "train")
_TABLES = ("task", "model", "train")  # sections of options; the others name a component
_DEFAULT_NAMES = {
    "tokenizer": "char",
    "cell": "lstm",
    "optimizer": "adam",
    "sampler": "temperature",
}


@attrs.frozen(kw_only=True)
class PipelineSpec:
    """Everything needed to build a pipeline; equal specs build equal pipelines."""

    task: TaskSpec = attrs.field(factory=TaskSpec)
    tokenizer: ComponentSpec
    cell: CellSpec
    model: ModelSpec = attrs.field(factory=ModelSpec)
    optimizer: ComponentSpec
    sampler: ComponentSpec
    train: TrainSpec = attrs.field(factory=TrainSpec)

    # -- reading ------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], registry: Registry | None = None) -> PipelineSpec:
        """Build and validate a spec. Missing sections and options take their defaults.

        A component may be given as a name (``"char"``) or a table with ``name`` and options.
        """
        if not isinstance(data, Mapping):
            raise SpecError("", f"a spec must be a table/dict, got {type(data).__name__}")
        registry = get_registry(registry)
        problems: list[SpecError] = [
            SpecError(
                key,
                f"unknown section{did_you_mean(key, _SECTIONS)} (sections: {', '.join(_SECTIONS)})",
            )
            for key in data
            if key not in _SECTIONS
        ]
        builders = {
            "task": lambda value: build_options(TaskSpec, _task_table(value), "task"),
            "tokenizer": lambda value: _component(registry, "tokenizer", value),
            "cell": lambda value: _cell(registry, value),
            "model": lambda value: build_options(ModelSpec, _table(value, "model"), "model"),
            "optimizer": lambda value: _component(registry, "optimizer", value),
            "sampler": lambda value: _component(registry, "sampler", value),
            "train": lambda value: build_options(TrainSpec, _table(value, "train"), "train"),
        }
        sections = {}
        for section, build in builders.items():  # every section checked: all mistakes at once
            with collecting(problems):
                sections[section] = build(data.get(section, {} if section in _TABLES else None))
        if problems:
            raise SpecError.of(problems)
        return cls(**sections)

    @classmethod
    def from_toml(cls, source: str | Path, registry: Registry | None = None) -> PipelineSpec:
        """Read a TOML file (a path), or TOML text (a string containing a newline or ``=``)."""
        text, where = _read(source)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise SpecError("", f"{where}: invalid TOML: {error}") from None
        except ValueError:  # an integer longer than Python reads
            raise SpecError("", f"{where}: {TOO_MANY_DIGITS}") from None
        return cls.from_dict(data, registry)

    @classmethod
    def from_json(cls, source: str | Path, registry: Registry | None = None) -> PipelineSpec:
        """Read a JSON file (a path), or JSON text (a string starting with ``{``)."""
        text, where = _read(source)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SpecError("", f"{where}: invalid JSON: {error}") from None
        except ValueError:  # an integer longer than Python reads
            raise SpecError("", f"{where}: {TOO_MANY_DIGITS}") from None
        return cls.from_dict(data, registry)

    @classmethod
    def from_file(cls, path: str | Path, registry: Registry | None = None) -> PipelineSpec:
        """Read ``.toml`` or ``.json`` by the file's suffix."""
        path = Path(path)
        if path.suffix == ".toml":
            return cls.from_toml(path, registry)
        if path.suffix == ".json":
            return cls.from_json(path, registry)
        raise SpecError("", f"{path}: a spec file must end in .toml or .json")

    @classmethod
    def from_preset(cls, name: str, registry: Registry | None = None) -> PipelineSpec:
        """A spec shipped with charseq: see :func:`presets` (e.g. ``"char-rnn"``)."""
        available = presets()
        if name not in available:
            hint = did_you_mean(name, available)
            raise SpecError("", f"unknown preset {name!r}{hint} (presets: {', '.join(available)})")
        text = resources.files("charseq.presets").joinpath(f"{name}.toml").read_text("utf-8")
        return cls.from_toml(text, registry)

    # -- writing ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Every section with every option spelled out (defaults included)."""
        return {
            "task": self.task.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "cell": self.cell.to_dict(),
            "model": options_to_dict(self.model),
            "optimizer": self.optimizer.to_dict(),
            "sampler": self.sampler.to_dict(),
            "train": options_to_dict(self.train),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_toml(self) -> str:
        # TOML has no null: an option left at None is omitted, and reads back as its default.
        return tomli_w.dumps(_drop_none(self.to_dict()))

    def save(self, path: str | Path) -> None:
        """Write as TOML or JSON, by the file's suffix."""
        path = Path(path)
        if path.suffix not in (".toml", ".json"):
            raise SpecError("", f"{path}: a spec file must end in .toml or .json")
        path.write_text(self.to_toml() if path.suffix == ".toml" else self.to_json(), "utf-8")

    def replace(self, registry: Registry | None = None, **changes: Any) -> PipelineSpec:
        """A copy with whole sections replaced, validated as :meth:`from_dict` validates.

        Each section is given as a section object (``attrs.evolve(spec.train, steps=300)``)
        or as a table like :meth:`from_dict`'s (options it leaves out take their defaults).
        To set single options, see :meth:`override`.
        """
        data = self.to_dict()
        for section, value in changes.items():
            if section not in _SECTIONS:
                raise SpecError(section, f"unknown section{did_you_mean(section, _SECTIONS)}")
            if isinstance(value, ComponentSpec):
                value = value.to_dict()
            elif attrs.has(type(value)):
                value = options_to_dict(value)
            data[section] = value
        return PipelineSpec.from_dict(data, registry)

    def override(
        self, settings: Mapping[str, Any], registry: Registry | None = None
    ) -> PipelineSpec:
        """A copy with dotted keys set, e.g. ``{"cell.hidden_size": 256, "cell.name": "gru"}``.

        Changing a component's ``name`` drops options the new component does not have.
        """
        data = self.to_dict()
        for dotted, value in settings.items():
            section, _, key = dotted.partition(".")
            if section not in _SECTIONS:
                raise SpecError(dotted, f"unknown section{did_you_mean(section, _SECTIONS)}")
            if not key:
                data[section] = value
                continue
            if section not in _TABLES and (data[section] is None or isinstance(data[section], str)):
                # set just before as a name, or to None (the default component)
                data[section] = {} if data[section] is None else {"name": data[section]}
            if not isinstance(data[section], dict):
                raise SpecError(
                    section,
                    f"expected a table/dict, got {type(data[section]).__name__} "
                    f"{data[section]!r}, so {dotted} cannot be set in it",
                )
            if key == "name" and data[section].get("name") != value:
                data[section] = {"name": value, **_shared_layout(data[section], section)}
            data[section][key] = value
        return PipelineSpec.from_dict(data, registry)


def presets() -> list[str]:
    """Names of the spec files shipped in ``charseq/presets``."""
    folder = resources.files("charseq.presets")
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def _component(registry: Registry, kind: str, value: Any) -> ComponentSpec:
    name, options = _split_name(kind, value)
    component = _lookup(registry, kind, name)
    return ComponentSpec(name=name, options=build_options(component.options, options, kind))


def _cell(registry: Registry, value: Any) -> CellSpec:
    name, options = _split_name("cell", value)
    component = _lookup(registry, "cell", name)
    layout_keys = {f.name for f in option_fields(CellLayout)}
    plugin_keys = {f.name for f in option_fields(component.options)}
    problems = []
    for key in options:
        if key not in layout_keys | plugin_keys:
            hint = did_you_mean(key, layout_keys | plugin_keys)
            problems.append(
                SpecError(f"cell.{key}", f"unknown option{hint or ' for cell ' + repr(name)}")
            )
    known = {k: v for k, v in options.items() if k in layout_keys | plugin_keys}
    parts = {}
    for part, keys, cls in (
        ("layout", layout_keys, CellLayout),
        ("options", plugin_keys - layout_keys, component.options),
    ):
        with collecting(problems):
            parts[part] = build_options(cls, {k: v for k, v in known.items() if k in keys}, "cell")
    if problems:
        raise SpecError.of(problems)
    return CellSpec(name=name, **parts)


def _split_name(kind: str, value: Any) -> tuple[str, dict[str, Any]]:
    if value is None:
        return _DEFAULT_NAMES[kind], {}
    if isinstance(value, str):
        return value, {}
    options = dict(_table(value, kind))
    name = options.pop("name", _DEFAULT_NAMES[kind])
    if not isinstance(name, str):
        raise SpecError(
            f"{kind}.name", f"expected a name (str), got {type(name).__name__} {name!r}"
        )
    return name, options


def _lookup(registry: Registry, kind: str, name: str) -> Any:
    try:
        return registry.get(kind, name)
    except (UnknownComponentError, DuplicateComponentError) as error:
        raise SpecError(f"{kind}.name", str(error)) from None


def _task_table(value: Any) -> Mapping[str, Any]:
    """``task = "classify"`` is short for ``[task] name = "classify"``."""
    return {"name": value} if isinstance(value, str) else _table(value, "task")


def _table(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(path, f"expected a table/dict, got {type(value).__name__} {value!r}")
    return value


def _shared_layout(section: dict[str, Any], name: str) -> dict[str, Any]:
    """Keep the cell layout when the cell changes; other components start from defaults."""
    if name != "cell":
        return {}
    return {f.name: section[f.name] for f in option_fields(CellLayout) if f.name in section}


def _drop_none(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _drop_none(v) for k, v in data.items() if v is not None}
    return data


def _read(source: str | Path) -> tuple[str, str]:
    if isinstance(source, Path) or ("\n" not in source and "=" not in source and "{" not in source):
        path = Path(source)
        try:
            text = path.read_text("utf-8-sig")  # a byte-order mark some editors add is dropped
        except OSError as error:
            raise SpecError("", f"cannot read spec {path}: {error.strerror or error}") from None
        except UnicodeDecodeError as error:
            raise SpecError(
                "", f"{path}: a spec file must be UTF-8 text (byte {error.start} is not)"
            ) from None
        return text, str(path)
    return source, "<string>"
