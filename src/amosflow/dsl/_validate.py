"""Validate flow documents and run inputs, reporting every problem by JSON Pointer."""

from __future__ import annotations

import functools
import json
from typing import Any

from jsonschema import Draft202012Validator
from pydantic import ValidationError

from amosflow.dsl._models import Flow
from amosflow.dsl._pointers import diagnostics_from_error, join
from amosflow.dsl._semantics import check_flow
from amosflow.errors import Diagnostic, ValidationFailedError

__all__ = ["load_flow_text", "parse_flow", "validate_flow", "validate_inputs"]


# Deeper JSON is refused up front: Pydantic and the serialiser give up a little past 200.
MAX_NESTING = 128
PARSED_FLOWS = 256  # valid flow documents remembered by parse_flow


def _too_deep(document: Any) -> Diagnostic | None:
    """Find a value nested deeper than MAX_NESTING without recursing."""
    stack: list[tuple[Any, list[str | int]]] = [(document, [])]
    while stack:
        value, parts = stack.pop()
        if len(parts) > MAX_NESTING:
            return Diagnostic(join(parts), f"nested deeper than {MAX_NESTING} levels")
        if isinstance(value, dict):
            stack.extend((item, [*parts, key]) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((item, [*parts, index]) for index, item in enumerate(value))
    return None


def _check(document: Any) -> tuple[Flow | None, list[Diagnostic]]:
    if not isinstance(document, dict):
        return None, [Diagnostic("", "expected a JSON object (an amos.flow/v1 document)")]
    too_deep = _too_deep(document)
    if too_deep is not None:
        return None, [too_deep]
    try:
        flow = Flow.model_validate(document)
    except ValidationError as exc:
        return None, diagnostics_from_error(exc, document, Flow)
    return flow, check_flow(flow)


def validate_flow(document: Any) -> list[Diagnostic]:
    """Return every problem of a flow document; an empty list means it is valid."""
    return _check(document)[1]


def parse_flow(document: Any) -> Flow:
    """Return the Flow of a valid document or raise ValidationFailedError with every problem.

    Every run start parses its flow (and its children) again, and the same few documents come
    back all day: valid ones are remembered by their JSON text. A Flow is immutable, so the
    callers can share one.
    """
    try:
        text = json.dumps(document, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return _parse(document)  # not JSON: let validation say what is wrong with it
    return _parse_text(text)


@functools.lru_cache(maxsize=PARSED_FLOWS)
def _parse_text(text: str) -> Flow:
    return _parse(json.loads(text))


def _parse(document: Any) -> Flow:
    flow, diagnostics = _check(document)
    if diagnostics or flow is None:
        raise ValidationFailedError(diagnostics)
    return flow


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_flow_text(text: str, source: str = "") -> Flow:
    """Parse JSON text into a Flow; a syntax error is a diagnostic naming line and column."""
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        where = f" in {source}" if source else ""
        message = f"invalid JSON{where} at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise ValidationFailedError([Diagnostic("", message)]) from None
    except ValueError as exc:
        raise ValidationFailedError([Diagnostic("", f"invalid JSON: {exc}")]) from None
    except RecursionError:
        message = f"invalid JSON: nested deeper than {MAX_NESTING} levels"
        raise ValidationFailedError([Diagnostic("", message)]) from None
    return parse_flow(document)


def validate_inputs(flow: Flow, inputs: Any) -> dict[str, Any]:
    """Check run inputs against the flow's input schema and return them as a dict."""
    values = {} if inputs is None else inputs
    if not isinstance(values, dict):
        raise ValidationFailedError([Diagnostic("/inputs", "expected an object")])
    if flow.inputs is None:
        return dict(values)
    try:
        errors = list(Draft202012Validator(flow.inputs).iter_errors(values))
    except Exception as exc:
        # A schema that passed the meta-schema can still hold an unresolvable $ref.
        raise ValidationFailedError([Diagnostic("/inputs", f"cannot check inputs: {exc}")]) from exc
    if errors:
        raise ValidationFailedError(
            [Diagnostic("/inputs" + join(error.absolute_path), error.message) for error in errors]
        )
    return dict(values)
