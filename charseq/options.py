"""Component options: frozen attrs classes, declared once, used for everything.

A plugin declares its options like this::

    @attrs.frozen(kw_only=True)
    class LSTMOptions:
        bias: bool = option(True, help="add the bias terms b_ih and b_hh")
        forget_bias: float = option(0.0, help="added to the forget-gate bias at init")

The same class validates a spec, produces the "did you mean" errors, fills ``charseq plugins``
and the options tables of the documentation.
"""

from __future__ import annotations

import inspect
import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs

from charseq.checks import describe_value, is_int, is_number, short_repr
from charseq.errors import CharseqError, SpecError, collecting, did_you_mean

_MISSING = object()
_INT64 = 1 << 63
FLOAT32_MAX = 3.4028234663852886e38
"""The largest float32: a real-number option acts on float32 weights and activations, so it must
fit one (``optimizer.lr = 1e300`` overflowed at the first step)."""
_EMPTY = "none"
"""The spelling of "no value" that an optional option (``int | none``) takes as text, besides
JSON's ``null`` and Python's ``None`` (TOML has no null)."""


def option(
    default: Any,
    *,
    help: str,
    min: float | None = None,
    max: float | None = None,
    min_exclusive: bool = False,
    max_exclusive: bool = False,
    validator: Callable[[Any, attrs.Attribute, Any], None] | None = None,
) -> Any:
    """An attrs field with a default, one line of help and an optional numeric range.

    The range check gives messages such as ``must be >= 1, got 0``.
    """
    checks = []
    if min is not None or max is not None:
        checks.append(_Range(min, max, min_exclusive, max_exclusive))
    if validator is not None:
        checks.append(validator)
    return attrs.field(default=default, validator=checks, metadata={"help": help})


class OptionError(CharseqError, ValueError):
    """An option's value is out of range; ``option`` names it (for the spec path)."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        super().__init__(message)


@attrs.frozen
class _Range:
    low: float | None
    high: float | None
    low_exclusive: bool
    high_exclusive: bool

    def __call__(self, instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, tuple):
            for item in value:
                self(instance, attribute, item)
            return
        if not is_number(value):
            raise OptionError(attribute.name, f"must be a number, got {describe_value(value)}")
        if isinstance(value, float) and math.isnan(value):
            raise OptionError(attribute.name, "must be a number, got nan")
        if self.low is not None and (value <= self.low if self.low_exclusive else value < self.low):
            sign = ">" if self.low_exclusive else ">="
            raise OptionError(attribute.name, f"must be {sign} {self.low}, got {value}")
        if self.high is not None and (
            value >= self.high if self.high_exclusive else value > self.high
        ):
            sign = "<" if self.high_exclusive else "<="
            raise OptionError(attribute.name, f"must be {sign} {self.high}, got {value}")


@attrs.frozen
class NoOptions:
    """For components that take no options."""


def option_fields(cls: type) -> tuple[attrs.Attribute, ...]:
    """The fields of an options class, with their annotations resolved to types."""
    attrs.resolve_types(cls)
    return attrs.fields(cls)


def describe_options(cls: type) -> list[dict[str, Any]]:
    """One dict per option: name, type, default and help (for listings and the docs)."""
    return [
        {
            "name": f.name,
            "type": _type_name(f.type),
            "default": to_plain(f.default),
            "help": f.metadata.get("help", ""),
        }
        for f in option_fields(cls)
    ]


def format_default(value: Any) -> str:
    """A default (as :func:`describe_options` gives it) as a spec writes it; ``None`` is "unset".

    ``charseq plugins`` and the options tables of the documentation show defaults this way:
    ``true``, ``"error"``, ``[0.9, 0.999]``, and ``unset`` for an option that is left out.
    """
    if value is None:
        return "unset"
    return json.dumps(value, ensure_ascii=False)


def build_options(cls: type, data: Mapping[str, Any], path: str) -> Any:
    """Check ``data`` against the options class ``cls`` and build an instance.

    Raises :class:`SpecError` naming ``path.key`` for an unknown key (with the nearest valid
    name), a value of the wrong type, or a value the field's validator rejects; one error for
    all the unknown keys and wrong types at once.
    """
    fields = {f.name: f for f in option_fields(cls)}
    kwargs = {}
    problems: list[SpecError] = []
    for key, value in data.items():
        with collecting(problems):
            field = fields.get(key)
            if field is None:
                hint = did_you_mean(key, fields) or (
                    f" (options: {', '.join(fields)})" if fields else " (this component takes none)"
                )
                raise SpecError(_join(path, key), f"unknown option{hint}")
            kwargs[key] = _coerce(value, field.type, _join(path, key))
    if problems:
        raise SpecError.of(problems)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as error:
        option = getattr(error, "option", None)
        raise SpecError(_join(path, option) if option else path, str(error)) from None


def options_to_dict(options: Any) -> dict[str, Any]:
    """An options instance as plain JSON/TOML-ready values."""
    return {f.name: to_plain(getattr(options, f.name)) for f in attrs.fields(type(options))}


def to_plain(value: Any) -> Any:
    """Tuples become lists so that JSON and TOML round-trip them."""
    if isinstance(value, tuple):
        return [to_plain(v) for v in value]
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _coerce(value: Any, expected: Any, path: str) -> Any:
    """Return ``value`` as ``expected`` (ints widen to floats, lists to tuples) or raise."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(expected)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, path)
            except SpecError:
                pass
        if type(None) in options and isinstance(value, str) and value.lower() == _EMPTY:
            return None  # the "none" the message offers (a str option would have taken it)
        raise SpecError(path, f"expected {_type_name(expected)}, got {describe_value(value)}")
    if origin is Literal:
        choices = typing.get_args(expected)
        if value not in choices:
            hint = did_you_mean(str(value), [str(c) for c in choices])
            listed = ", ".join(repr(c) for c in choices)
            raise SpecError(path, f"must be one of {listed}, got {value!r}{hint}")
        return value
    if origin is tuple:
        args = typing.get_args(expected)
        if not isinstance(value, list | tuple):
            raise SpecError(path, f"expected {_type_name(expected)}, got {describe_value(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise SpecError(path, f"expected {len(args)} values, got {len(value)}")
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(_coerce(v, a, f"{path}[{i}]") for i, (v, a) in pairs)
    if expected is bool:
        if isinstance(value, bool):
            return value
        raise SpecError(path, f"expected bool (true or false), got {describe_value(value)}")
    elif expected is int:
        if is_int(value):
            if not -_INT64 <= value < _INT64:
                raise SpecError(
                    path, f"must fit in 64 bits (|value| < 2**63), got {short_repr(value)}"
                )
            return value
    elif expected is float:
        if is_number(value):
            if isinstance(value, float) and not math.isfinite(value):
                raise SpecError(path, f"must be a finite number, got {value}")
            if not -FLOAT32_MAX <= value <= FLOAT32_MAX:
                raise SpecError(
                    path,
                    f"must fit in float32 (|value| <= {FLOAT32_MAX:.4g}), the precision of the "
                    f"weights, got {short_repr(value)}",
                )
            return float(value)
    elif expected is str:
        if isinstance(value, str):
            return value
    elif expected is Any:
        return value
    else:
        raise TypeError(f"{path}: unsupported option type {expected!r}")
    raise SpecError(path, f"expected {_type_name(expected)}, got {describe_value(value)}")


def check_option_value(value: Any, expected: Any, path: str) -> Any:
    """``value`` as an option of type ``expected`` holds it; :class:`SpecError` if it cannot be,
    ``TypeError`` if a spec cannot hold that type at all (see :func:`option`)."""
    return _coerce(value, expected, path)


# -- the contract a plugin's options must meet ---------------------------------------------


def _reserved(kind: str) -> dict[str, str]:
    """Option names a component of ``kind`` cannot declare, and what already owns each."""
    # function-local: charseq.spec imports this module
    from charseq.spec import CellLayout

    reserved = {"name": "the component's name in a spec"}
    if kind == "cell":
        reserved["input_size"] = "the factory's first argument"
        for field in attrs.fields(CellLayout):
            reserved[field.name] = f"the cell layout every cell takes (cell.{field.name})"
    if kind == "optimizer":
        reserved["parameters"] = "the factory's first argument"
    if kind == "detector":
        reserved["text"] = "the detector's first argument"
    return reserved


def check_registrable(kind: str, name: str, factory: Callable[..., Any], options: type) -> None:
    """Refuse, when a plugin registers, options a spec could not carry to the factory.

    Raises:
        TypeError: a reserved name, a type specs cannot hold, a default that is not of its type
            or fails its own check, or an option the factory does not take.
    """
    where = f"{kind} {name!r}"
    reserved = _reserved(kind)
    for field in option_fields(options):
        if field.name in reserved:
            raise TypeError(
                f"{where}: an option cannot be named {field.name!r}: that is "
                f"{reserved[field.name]}; rename the option"
            )
        default = field.default
        if default is attrs.NOTHING:
            raise TypeError(
                f"{where}: option {field.name!r} has no default; every option needs one (a "
                "spec that leaves it out takes it)"
            )
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory(None) if default.takes_self else default.factory()
        try:
            check_option_value(default, field.type, field.name)
        except SpecError as error:
            raise TypeError(
                f"{where}: option {field.name!r} has default {default!r}, not of its own type: "
                f"{error.message}"
            ) from None
        except TypeError:
            raise TypeError(
                f"{where}: option {field.name!r} has type {field.type!r}, which a spec cannot "
                "hold; use bool, int, float, str, a Literal of them, a tuple of them, or any of "
                "these | None"
            ) from None
    try:
        options()
    except (TypeError, ValueError) as error:
        raise TypeError(f"{where}: its options' defaults fail their own checks: {error}") from None
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a builtin): nothing to check
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return
    accepted = {p.name for p in parameters if p.kind is not inspect.Parameter.POSITIONAL_ONLY}
    missing = [f.name for f in option_fields(options) if f.name not in accepted]
    if missing:
        raise TypeError(
            f"{where}: the factory {getattr(factory, '__qualname__', factory)!r} takes no "
            f"argument {', '.join(map(repr, missing))}, which the options declare; a spec "
            "passes every option to the factory by name"
        )


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_type_name(args[0])}"
        return f"list of {len(args)} ({', '.join(_type_name(a) for a in args)})"
    if tp is type(None):
        return _EMPTY
    return getattr(tp, "__name__", str(tp))
