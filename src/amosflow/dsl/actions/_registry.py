"""The action registry: ActionSpec, the base of every `with` model, and the look-ups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo

from amosflow.dsl._models import EXPRESSION_MARK, RENDERED, Duration, Expr, parse_duration
from amosflow.errors import UnknownActionError

# Duration and Expr are re-exported: every family module takes its building blocks from here.
__all__ = [
    "BUILTIN_MODULES",
    "ActionSpec",
    "Duration",
    "Expr",
    "WithModel",
    "all_actions",
    "bounded_timeout",
    "get_action",
    "register",
    "validate_with",
]

# Adding an action family is one private module `_NAME.py` plus its name in this tuple.
BUILTIN_MODULES = ("core", "http", "browser", "code", "file", "sql", "email", "llm", "agent")


class WithModel(BaseModel):
    """Base of every action's ``with``: closed, immutable, JSON types only."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)


@dataclass(frozen=True)
class ActionSpec:
    """What the DSL knows about one action: its name, capability and typed ``with``."""

    name: str
    capability: str
    with_model: type[BaseModel]
    description: str
    local: bool = False


_REGISTRY: dict[str, ActionSpec] = {}


def bounded_timeout(value: str, info: ValidationInfo, limit: str) -> str:
    """Check an action's own ``timeout`` against its ceiling ``limit`` (a duration).

    An expression is checked once rendered, at run time; at validation it passes as it is.
    """
    rendered = isinstance(info.context, dict) and bool(info.context.get(RENDERED))
    if EXPRESSION_MARK in value and not rendered:
        return value
    seconds = parse_duration(value).total_seconds()
    if seconds <= 0 or seconds > parse_duration(limit).total_seconds():
        raise ValueError(f"timeout must be more than 0 and at most {limit}, got {value!r}")
    return value


def register(spec: ActionSpec) -> ActionSpec:
    """Add an action to the registry; a second, different spec under one name is an error."""
    known = _REGISTRY.get(spec.name)
    if known is not None and known != spec:
        raise ValueError(f"action {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_action(name: str) -> ActionSpec:
    """Return the spec of a registered action or raise UnknownActionError."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownActionError(name) from None


def all_actions() -> list[ActionSpec]:
    """Return every registered action, sorted by name."""
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def validate_with(action: str, rendered: dict[str, Any]) -> BaseModel:
    """Validate a rendered ``with`` against the action's model; no expression may remain."""
    spec = get_action(action)
    return spec.with_model.model_validate(rendered, context={RENDERED: True})
