"""Values in and out of CEL: pruned, measured activations and plain JSON results."""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from amosflow.errors import ExpressionBudgetError, ExpressionError

if TYPE_CHECKING:
    from amosflow.dsl.expr._analysis import PruneTree

# Deeper values crash the library's converter (a 100k-deep list overflows the native stack).
MAX_VALUE_DEPTH: Final = 128
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
# Estimated serialized sizes of scalars: deterministic upper-ish bounds, not exact counts.
_SCALAR_BYTES: Final = 8


class Meter:
    """Measures values while they are prepared: largest length and largest serialized size.

    It also counts values (each scalar, list and map is one): how many there are in the largest
    element of any list or map (what a comprehension variable can hold) and in what is read of
    each free name (what a map's transform can copy into every element of its result).
    """

    __slots__ = ("largest_item", "largest_length", "largest_size", "values", "values_read")

    def __init__(self) -> None:
        self.largest_length = 0
        self.largest_size = 0
        self.values = 0
        self.largest_item = 0
        self.values_read: dict[str, int] = {}


def build_activation(
    scope: Mapping[str, Any], trees: Mapping[str, PruneTree | None], meter: Meter
) -> dict[str, Any]:
    """Copy only what the expression can read from the scope, normalised and measured."""
    activation: dict[str, Any] = {}
    for name, tree in trees.items():
        if name not in scope:
            known = ", ".join(sorted(scope)) or "none"
            raise ExpressionError(f"unknown name {name!r} (names in scope: {known})")
        before = meter.values
        activation[name] = _prune(scope[name], tree, meter, 0)
        meter.values_read[name] = meter.values - before
    return activation


def _prune(value: Any, tree: PruneTree | None, meter: Meter, depth: int) -> Any:
    if tree is None or not isinstance(value, Mapping):
        normalised, size = _normalise(value, meter, depth)
        meter.largest_size = max(meter.largest_size, size)
        return normalised
    if any(not isinstance(key, str) for key in tree):
        return _prune(value, None, meter, depth)
    meter.largest_length = max(meter.largest_length, len(value))
    return {
        key: _prune(value[key], sub, meter, depth + 1) for key, sub in tree.items() if key in value
    }


def _normalise(value: Any, meter: Meter, depth: int) -> tuple[Any, int]:
    """Turn integral floats into ints (JSON has one number type) and measure the value."""
    if depth > MAX_VALUE_DEPTH:
        raise ExpressionError(f"a value nests deeper than {MAX_VALUE_DEPTH} levels")
    meter.values += 1
    if isinstance(value, Mapping):
        return _normalise_map(value, meter, depth)
    if isinstance(value, (list, tuple)):
        return _normalise_list(value, meter, depth)
    size = _SCALAR_BYTES
    if isinstance(value, str):
        meter.largest_length = max(meter.largest_length, len(value))
        size = len(value) + 2
    elif isinstance(value, float):
        if value.is_integer() and _INT64_MIN <= value <= _INT64_MAX:
            value = int(value)
    elif isinstance(value, (bytes, bytearray)):
        meter.largest_length = max(meter.largest_length, len(value))
        size = len(value) * 4 // 3 + 4
    return value, size


def _normalise_map(value: Mapping[Any, Any], meter: Meter, depth: int) -> tuple[Any, int]:
    meter.largest_length = max(meter.largest_length, len(value))
    changed = not isinstance(value, dict)
    items: dict[Any, Any] = {}
    total = 2
    for key, item in value.items():
        before = meter.values
        new, size = _normalise(item, meter, depth + 1)
        meter.largest_item = max(meter.largest_item, meter.values - before)
        changed = changed or new is not item
        items[key] = new
        total += size + (len(key) + 4 if isinstance(key, str) else _SCALAR_BYTES)
    return (items if changed else value), total


def _normalise_list(
    value: list[Any] | tuple[Any, ...], meter: Meter, depth: int
) -> tuple[Any, int]:
    meter.largest_length = max(meter.largest_length, len(value))
    changed = not isinstance(value, list)
    elements: list[Any] = []
    total = 2
    for item in value:
        before = meter.values
        new, size = _normalise(item, meter, depth + 1)
        meter.largest_item = max(meter.largest_item, meter.values - before)
        changed = changed or new is not item
        elements.append(new)
        total += size + 1
    return (elements if changed else value), total


def to_json(value: Any, limit: int) -> Any:
    """Convert a CEL result to plain JSON types, refusing results over `limit` bytes."""
    result, size = _to_json(value, 0)
    if size > limit:
        raise ExpressionBudgetError(f"result is too large: about {size} bytes, limit {limit}")
    return result


def _to_json(value: Any, depth: int) -> tuple[Any, int]:
    if depth > MAX_VALUE_DEPTH:
        raise ExpressionError(f"result nests deeper than {MAX_VALUE_DEPTH} levels")
    if isinstance(value, list):
        items = [_to_json(item, depth + 1) for item in value]
        return [item for item, _ in items], 2 + sum(size + 1 for _, size in items)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        total = 2
        for key, item in value.items():
            if not isinstance(key, str):
                raise ExpressionError(
                    f"result map keys must be strings, got {type_name(key)} key {key!r}"
                )
            out[key], size = _to_json(item, depth + 1)
            total += len(key) + 4 + size
        return out, total
    scalar = _scalar_to_json(value)
    return scalar, len(scalar) + 2 if isinstance(scalar, str) else _SCALAR_BYTES


def _scalar_to_json(value: Any) -> Any:
    """Keep JSON scalars; write bytes as base64 and times as RFC 3339 / CEL duration text."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ExpressionError(f"result {value} is not a finite number, which JSON cannot hold")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.timedelta):
        return _duration_text(value)
    raise ExpressionError(f"result of type {type(value).__name__} cannot be turned into JSON")


def _duration_text(value: dt.timedelta) -> str:
    """Write a duration the way CEL's `string(duration)` does: seconds with an `s` suffix."""
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    seconds, fraction = divmod(abs(micros), 1_000_000)
    sign = "-" if micros < 0 else ""
    if fraction:
        return f"{sign}{seconds}.{fraction:06d}".rstrip("0") + "s"
    return f"{sign}{seconds}s"


def to_text(value: Any) -> str:
    """Render a JSON result into a string: text as-is, null as empty, the rest as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def type_name(value: Any) -> str:
    """Name a value's type the way CEL users know it."""
    names = {
        bool: "bool",
        int: "int",
        float: "double",
        str: "string",
        bytes: "bytes",
        list: "list",
        dict: "map",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)
