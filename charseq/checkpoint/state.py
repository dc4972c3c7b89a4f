"""Nested state (an optimizer's ``state_dict``, the data cursor, the carried hidden state) as
tensors plus plain JSON, and every global random number generator captured and restored."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from torch import Tensor

from charseq.checkpoint.directory import CheckpointError
from charseq.checks import is_int, is_number
from charseq.errors import CharseqError


def state_to_tensors(state: Any) -> tuple[dict[str, Tensor], Any]:
    """Split nested state into ``(tensors, meta)``: a flat tensor dict and plain-JSON ``meta``.

    ``state`` may nest dicts (any keys of the types below), lists and tuples of tensors,
    ``None``, bools, ints, floats (NaN and infinities included) and strings; this covers
    ``state_dict()`` of torch optimizers and LR schedulers, data cursors and hidden states.
    :func:`state_from_tensors` rebuilds it exactly: types, dtypes, tuples and key types.
    Tensors are named after their path (``state.0.exp_avg``) and are the state's own, not
    copies: write them before the state changes. Other types raise ``TypeError``; mappings come
    back as plain dicts.
    """
    tensors: dict[str, Tensor] = {}
    return tensors, _encode(state, "", tensors)


def state_from_tensors(tensors: Mapping[str, Tensor], meta: Any) -> Any:
    """Rebuild the state split by :func:`state_to_tensors`; raises CheckpointError on a mismatch."""
    try:
        return _decode(meta, tensors)
    except (TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(f"the saved state is malformed: {error}") from None
    except RecursionError:
        raise CheckpointError(
            "the saved state is nested too deeply (charseq writes none such)"
        ) from None


def optimizer_state_to_tensors(state_dict: Mapping[str, Any]) -> tuple[dict[str, Tensor], Any]:
    """``(tensors, meta)`` for an optimizer's ``state_dict()``; see :func:`state_to_tensors`."""
    if not {"state", "param_groups"} <= set(state_dict):
        raise TypeError("not an optimizer state_dict: it needs 'state' and 'param_groups'")
    return state_to_tensors(dict(state_dict))


def optimizer_state_from_tensors(
    tensors: Mapping[str, Tensor], meta: Any, like: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The optimizer ``state_dict`` saved by :func:`optimizer_state_to_tensors`, exactly.

    With ``like`` (the ``state_dict()`` of the optimizer it is for), its parameter groups must
    match those: as many, with as many parameters, and each setting both have of the same kind
    (a number where ``like`` has a number, ...), so that a wrong one fails here and not in the
    middle of a training step.
    """
    state = state_from_tensors(tensors, meta)
    if not isinstance(state, dict) or not {"state", "param_groups"} <= set(state):
        raise CheckpointError("the saved optimizer state is not an optimizer state_dict")
    if like is not None:
        _check_groups(state["param_groups"], like["param_groups"])
    return state


def _check_groups(saved: Any, fresh: list[dict[str, Any]]) -> None:
    if not isinstance(saved, list) or len(saved) != len(fresh):
        raise CheckpointError(f"param_groups is {_shown(saved)}; expected {len(fresh)} group(s)")
    for i, (group, mine) in enumerate(zip(saved, fresh, strict=True)):
        if not isinstance(group, dict):
            raise CheckpointError(f"param_groups[{i}] is {_shown(group)}; expected a table")
        for key in mine.keys() & group.keys():
            if not _same_kind(mine[key], group[key]):
                raise CheckpointError(
                    f"param_groups[{i}].{key} is {_shown(group[key])}; expected the kind of "
                    f"{_shown(mine[key])}"
                )


def _same_kind(mine: Any, saved: Any) -> bool:
    """Whether a saved optimizer setting is of the kind of the optimizer's own value."""
    if mine is None or isinstance(mine, bool):  # flags: foreach, fused, maximize, ...
        return saved is None or isinstance(saved, bool)
    if isinstance(mine, int | float):
        return is_number(saved)
    if isinstance(mine, list | tuple):
        return (
            isinstance(saved, list | tuple)
            and len(saved) == len(mine)
            and all(_same_kind(a, b) for a, b in zip(mine, saved, strict=True))
        )
    if isinstance(mine, str):
        return isinstance(saved, str)
    if isinstance(mine, Tensor):
        return isinstance(saved, Tensor) or is_number(saved)
    return True


def _encode(value: Any, path: str, tensors: dict[str, Tensor]) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, Tensor):
        key, n = path or "tensor", 1
        while key in tensors:  # keys that differ only in type (0 and "0") share a path
            key, n = f"{path or 'tensor'}#{n}", n + 1
        tensors[key] = value
        return {"__tensor__": key}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, _join(path, i), tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, _join(path, i), tensors) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, _join(path, k), tensors) for k, v in value.items()}
        return {
            "__items__": [
                [_encode(k, _join(path, "key"), tensors), _encode(v, _join(path, k), tensors)]
                for k, v in value.items()
            ]
        }
    where = path or "the top level"
    raise TypeError(f"cannot store a {type(value).__name__} at {where} in a checkpoint")


def _decode(meta: Any, tensors: Mapping[str, Tensor]) -> Any:
    if isinstance(meta, list):
        return [_decode(v, tensors) for v in meta]
    if not isinstance(meta, dict):
        return meta
    if len(meta) == 1:
        [(tag, body)] = meta.items()
        if tag == "__tensor__":
            if body not in tensors:
                raise CheckpointError(f"saved state refers to a missing tensor {body!r}")
            return tensors[body]
        if tag == "__tuple__":
            return tuple(_decode(v, tensors) for v in body)
        if tag == "__items__":
            return {_decode(k, tensors): _decode(v, tensors) for k, v in body}
        if tag == "__float__":
            return float(body)
    return {k: _decode(v, tensors) for k, v in meta.items()}


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


# -- checking what a checkpoint holds --------------------------------------------------------


@attrs.frozen
class Field:
    """What one field of a JSON table read from a checkpoint must be.

    Attributes:
        expected: what it must be, in words (``"an int >= 0"``), for the error.
        accepts: whether a value is that.
    """

    expected: str
    accepts: Callable[[Any], bool]

    def __or__(self, other: Field) -> Field:
        return Field(
            f"{self.expected} or {other.expected}", lambda v: self.accepts(v) or other.accepts(v)
        )


COUNT = Field("an int >= 0", lambda v: is_int(v) and v >= 0)
NUMBER = Field("a number", is_number)
POSITIVE = Field("a finite number > 0", lambda v: is_number(v) and 0 < v < math.inf)
NOT_NEGATIVE = Field("a number >= 0", lambda v: is_number(v) and v >= 0)
BOOL = Field("true or false", lambda v: isinstance(v, bool))
TEXT = Field("a string", lambda v: isinstance(v, str))
TABLE = Field("a table", lambda v: isinstance(v, dict))
TEXTS = Field(
    "a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)
)
NULL = Field("null", lambda v: v is None)


def check_fields(
    file: Path | str, where: str, table: Any, fields: Mapping[str, Field]
) -> dict[str, Any]:
    """``table``, a JSON object read from ``file``, once each of ``fields`` is as expected.

    Raises :class:`CheckpointError` naming the file and the field (``where.name``), what it
    holds and what it must be; a field absent from ``table`` counts as ``null``.
    """
    if not isinstance(table, dict):
        raise CheckpointError(f"{file}: {where} is {_shown(table)}; expected a table")
    for name, field in fields.items():
        value = table.get(name)
        if not field.accepts(value):
            raise CheckpointError(
                f"{file}: {where}.{name} is {_shown(value)}; expected {field.expected}"
            )
    return table


def check_tensors(
    file: Path | str,
    stored: Mapping[str, Tensor],
    expected: Mapping[str, Any],
    dtypes: Collection[torch.dtype] = (),
) -> None:
    """Refuse tensors read from ``file`` unless they have exactly the names, shapes and dtypes of
    ``expected`` (tensors, possibly on the ``meta`` device), with a :class:`CheckpointError`
    naming the file and the first difference. ``dtypes``, if given, are the dtypes accepted
    instead of ``expected``'s own."""
    missing = [name for name in expected if name not in stored]
    extra = [name for name in stored if name not in expected]
    if missing or extra:
        raise CheckpointError(
            f"{file}: holds tensors {_names(list(stored))}, where {_names(list(expected))} are "
            f"expected (missing: {_names(missing)}; unexpected: {_names(extra)})"
        )
    for name, want in expected.items():
        have = stored[name]
        accepted = tuple(dtypes) or (want.dtype,)
        if have.dtype not in accepted:
            wanted = " or ".join(str(d).removeprefix("torch.") for d in accepted)
            raise CheckpointError(
                f"{file}: tensor {name!r} has dtype {_dtype(have)}, where {wanted} is expected"
            )
        if have.shape != want.shape:
            raise CheckpointError(
                f"{file}: tensor {name!r} has shape {list(have.shape)}, where "
                f"{list(want.shape)} is expected"
            )


@contextmanager
def restoring(file: Path | str, field: str) -> Iterator[None]:
    """Turn whatever restoring ``field`` of ``file`` raises (a checkpoint's value that the
    component refuses or chokes on) into a :class:`CheckpointError` naming both."""
    try:
        yield
    except (
        CharseqError,
        KeyError,
        TypeError,
        ValueError,
        IndexError,
        RuntimeError,
        OverflowError,
    ) as error:
        if isinstance(error, CheckpointError) and str(file) in str(error):
            raise
        raise CheckpointError(f"{file}: {field} cannot be restored: {error}") from None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _names(names: list[str]) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:4])
    return shown + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def _dtype(tensor: Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


# -- random number generators -----------------------------------------------------------------


def capture_rng() -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The state of every global RNG as ``(tensors, meta)``: Python ``random``, numpy's global
    generator, torch's CPU generator and, if CUDA is initialised, every CUDA device's generator.

    ``meta`` is plain JSON. CUDA is not initialised here: a process that never used CUDA has no
    CUDA RNG state worth keeping.
    """
    version, internal, gauss_next = random.getstate()
    algorithm, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    tensors = {
        "python": torch.tensor(internal, dtype=torch.int64),
        "numpy": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "torch": torch.get_rng_state(),
    }
    meta: dict[str, Any] = {
        "python": {"version": version, "gauss_next": gauss_next},
        "numpy": {
            "algorithm": algorithm,
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "cuda_devices": 0,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states = torch.cuda.get_rng_state_all()
        tensors.update({f"cuda.{i}": state.cpu() for i, state in enumerate(states)})
        meta["cuda_devices"] = len(states)
    return tensors, meta


def restore_rng(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> None:
    """Restore the RNG states captured by :func:`capture_rng`.

    CUDA states are restored for the devices that exist here; states of devices this machine
    lacks (a GPU checkpoint resumed on CPU) are ignored.
    """
    try:
        python, numpy_meta = meta["python"], meta["numpy"]
        internal = tuple(int(x) for x in tensors["python"].tolist())
        random.setstate((python["version"], internal, python["gauss_next"]))
        np.random.set_state(
            (
                numpy_meta["algorithm"],
                tensors["numpy"].numpy().astype(np.uint32),
                numpy_meta["pos"],
                numpy_meta["has_gauss"],
                numpy_meta["cached_gaussian"],
            )
        )
        torch.set_rng_state(tensors["torch"])
        saved = int(meta.get("cuda_devices", 0))
        if saved and torch.cuda.is_available():
            for i in range(min(saved, torch.cuda.device_count())):
                torch.cuda.set_rng_state(tensors[f"cuda.{i}"], i)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, OverflowError) as error:
        raise CheckpointError(f"the saved RNG state is incomplete or invalid: {error!r}") from None


def generator_state(generator: torch.Generator) -> Tensor:
    """The state of a ``torch.Generator`` (CPU or CUDA) as a CPU uint8 tensor."""
    return generator.get_state().cpu()


def restore_generator(generator: torch.Generator, state: Tensor) -> torch.Generator:
    """Set ``generator`` to a state from :func:`generator_state`; returns it."""
    generator.set_state(state.to("cpu", torch.uint8))
    return generator
