"""Turn Pydantic validation errors into diagnostics located by real JSON Pointers."""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from amosflow.dsl._models import STEP_CLASSES, StepBase
from amosflow.errors import Diagnostic

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from pydantic_core import ErrorDetails

STEP_TYPES = ", ".join(sorted(STEP_CLASSES))

_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "none_required": "null",
}
_COMPARISONS = {
    "greater_than_equal": ">=",
    "less_than_equal": "<=",
    "greater_than": ">",
    "less_than": "<",
}
_FORMATS = {
    "string_pattern_mismatch": "expected a string matching {pattern}",
    "literal_error": "expected {expected}",
    "too_short": "expected at least {min_length} item(s)",
}


def escape(token: str | int) -> str:
    """Escape one reference token as RFC 6901 requires."""
    return str(token).replace("~", "~0").replace("/", "~1")


def join(parts: Iterable[str | int]) -> str:
    """Build a JSON Pointer from its reference tokens."""
    return "".join(f"/{escape(part)}" for part in parts)


def json_type(value: Any) -> str:
    """Name the JSON type of a value as a user would."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


@dataclass(frozen=True)
class _Shape:
    """What the validated value at one position is: a model, a list, a step or opaque."""

    kind: str
    model: type[BaseModel] | None = None
    item: _Shape | None = None


_OPAQUE = _Shape("opaque")
_STEP = _Shape("step")


def _shape_of(annotation: Any) -> _Shape:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _shape_of(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        if members and all(isinstance(m, type) and issubclass(m, StepBase) for m in members):
            return _STEP
        return _shape_of(members[0]) if len(members) == 1 else _OPAQUE
    if origin is list:
        return _Shape("list", item=_shape_of(get_args(annotation)[0]))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _Shape("model", model=annotation)
    return _OPAQUE


def _field_shape(model: type[BaseModel], key: str) -> _Shape | None:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return _shape_of(info.annotation)
    return None


def _keys(model: type[BaseModel]) -> str:
    return ", ".join(info.alias or name for name, info in model.model_fields.items())


def _child(node: Any, token: str | int) -> tuple[bool, Any]:
    if isinstance(node, dict) and token in node:
        return True, node[token]
    if isinstance(node, list) and isinstance(token, int) and 0 <= token < len(node):
        return True, node[token]
    return False, None


@dataclass
class _Located:
    parts: list[str | int]
    node: Any
    parent_model: type[BaseModel] | None
    union_member: bool


def _locate(loc: Sequence[str | int], document: Any, root: type[BaseModel]) -> _Located:
    """Follow a Pydantic ``loc`` through the document, dropping the labels Pydantic inserts."""
    shape, node = _Shape("model", model=root), document
    parts: list[str | int] = []
    parent_model: type[BaseModel] | None = None
    for token in loc:
        if shape.kind == "step":
            # A discriminated union inserts the tag right after the step's own position.
            if isinstance(node, dict) and token in STEP_CLASSES and node.get("type") == token:
                shape = _Shape("model", model=STEP_CLASSES[str(token)])
                continue
            shape = _OPAQUE
        if shape.kind == "model" and shape.model is not None and isinstance(token, str):
            parent_model = shape.model
            shape = _field_shape(shape.model, token) or _OPAQUE
        elif shape.kind == "list" and shape.item is not None and isinstance(token, int):
            shape = shape.item
        else:
            found, _ = _child(node, token)
            if not found:
                # A member label of a plain union (``str``, ``bool``, ``function-after[...]``).
                return _Located(parts, node, parent_model, union_member=True)
            shape = _OPAQUE
        parts.append(token)
        _, node = _child(node, token)
    return _Located(parts, node, parent_model, union_member=False)


def _missing(error: ErrorDetails, where: _Located) -> tuple[list[str | int], str]:
    del error
    return where.parts[:-1], f"missing required key '{where.parts[-1]}'"


def _extra(error: ErrorDetails, where: _Located) -> tuple[list[str | int], str]:
    del error
    allowed = f"; expected one of: {_keys(where.parent_model)}" if where.parent_model else ""
    return where.parts, f"unknown key '{where.parts[-1]}'{allowed}"


def _bad_tag(error: ErrorDetails, where: _Located) -> tuple[list[str | int], str]:
    del error
    tag = where.node.get("type") if isinstance(where.node, dict) else None
    return [*where.parts, "type"], f"unknown step type {tag!r}; expected one of: {STEP_TYPES}"


def _no_tag(error: ErrorDetails, where: _Located) -> tuple[list[str | int], str]:
    del error
    return where.parts, f"missing required key 'type'; expected one of: {STEP_TYPES}"


_LOCATED = {
    "missing": _missing,
    "extra_forbidden": _extra,
    "union_tag_invalid": _bad_tag,
    "union_tag_not_found": _no_tag,
}


def _message(error: ErrorDetails) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in _TYPE_NAMES:
        return f"expected {_TYPE_NAMES[kind]}, got {json_type(error['input'])}"
    if kind in _COMPARISONS:
        return f"expected a number {_COMPARISONS[kind]} {next(iter(ctx.values()), '?')}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    try:
        return _FORMATS[kind].format_map(ctx)
    except KeyError:
        return error["msg"]


def _describe(error: ErrorDetails, where: _Located) -> tuple[list[str | int], str]:
    handler = _LOCATED.get(error["type"])
    if handler is not None and where.parts:
        return handler(error, where)
    return where.parts, _message(error)


def diagnostics_from_error(
    error: ValidationError, document: Any, root: type[BaseModel], prefix: str = ""
) -> list[Diagnostic]:
    """Convert every Pydantic error into a diagnostic at the offending value's pointer."""
    found: dict[str, list[str]] = {}
    unions: set[str] = set()
    for details in error.errors():
        where = _locate(details["loc"], document, root)
        parts, message = _describe(details, where)
        pointer = prefix + join(parts)
        if where.union_member:
            unions.add(pointer)
        messages = found.setdefault(pointer, [])
        if message not in messages:
            messages.append(message)
    result: list[Diagnostic] = []
    for pointer, messages in found.items():
        if pointer in unions and len(messages) > 1:
            result.append(Diagnostic(pointer, _merge(messages)))
        else:
            result.extend(Diagnostic(pointer, message) for message in messages)
    return result


def _merge(messages: list[str]) -> str:
    """Fold the per-member errors of one union into a single 'expected A or B' message."""
    expected = [m.removeprefix("expected ").split(", got ")[0] for m in messages]
    got = next((m.split(", got ")[1] for m in messages if ", got " in m), None)
    return f"expected {' or '.join(expected)}" + (f", got {got}" if got else "")
