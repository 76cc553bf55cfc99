"""Checks that need a structurally valid flow: ids, actions, schemas and expressions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator
from pydantic import ValidationError

from amosflow.dsl import expr
from amosflow.dsl._models import (
    ActionStep,
    Flow,
    ForeachStep,
    HumanStep,
    Step,
    SwitchStep,
    TryStep,
    child_blocks,
    iter_steps,
)
from amosflow.dsl._pointers import diagnostics_from_error, join
from amosflow.dsl.actions import all_actions, get_action
from amosflow.errors import Diagnostic, ExpressionError, UnknownActionError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

BASE_SCOPE = frozenset({"inputs", "vars", "steps", "config", "run"})

# Keys never rendered: literals of the vocabulary, and JSON Schemas that only describe data.
_NOT_RENDERED = frozenset({"id", "type", "action", "form"})
_CHILD_FIELDS = frozenset({"then", "else_", "default", "steps", "branches", "catch", "finally_"})

_WHERE = {
    "secrets": "secrets are only allowed inside an action's 'with'",
    "error": "'error' is only in scope inside a try step's 'catch'",
    "output": "'output' is only in scope in an action's 'check'",
}

_META_VALIDATOR = Draft202012Validator(
    Draft202012Validator.META_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
)


def check_flow(flow: Flow) -> list[Diagnostic]:
    """Run every semantic check on a structurally valid flow."""
    found: list[Diagnostic] = []
    ids = _check_ids(flow, found)
    if flow.inputs is not None:
        found.extend(_check_schema(flow.inputs, "/inputs"))
        if flow.inputs.get("type", "object") != "object":
            found.append(Diagnostic("/inputs/type", "expected 'object': run inputs are an object"))
    for pointer, step in iter_steps(flow.steps):
        if isinstance(step, ActionStep):
            found.extend(_check_action(step, pointer))
        elif isinstance(step, HumanStep) and step.form is not None:
            found.extend(_check_schema(step.form, f"{pointer}/form"))
    _ExpressionChecker(flow, ids, found).run()
    return found


def _check_ids(flow: Flow, found: list[Diagnostic]) -> frozenset[str]:
    seen: dict[str, str] = {}
    for pointer, step in iter_steps(flow.steps):
        if step.id in seen:
            found.append(
                Diagnostic(
                    f"{pointer}/id", f"duplicate step id {step.id!r}, first at {seen[step.id]}"
                )
            )
        else:
            seen[step.id] = pointer
    return frozenset(seen)


def _check_schema(schema: dict[str, Any], pointer: str) -> list[Diagnostic]:
    return [
        Diagnostic(pointer + join(error.absolute_path), f"not a valid JSON Schema: {error.message}")
        for error in _META_VALIDATOR.iter_errors(schema)
    ]


def _check_action(step: ActionStep, pointer: str) -> list[Diagnostic]:
    try:
        spec = get_action(step.action)
    except UnknownActionError:
        known = ", ".join(spec.name for spec in all_actions())
        return [
            Diagnostic(
                f"{pointer}/action", f"unknown action {step.action!r}; expected one of: {known}"
            )
        ]
    try:
        spec.with_model.model_validate(step.with_)
    except ValidationError as exc:
        return diagnostics_from_error(exc, step.with_, spec.with_model, f"{pointer}/with")
    return []


def _strings(value: Any, pointer: str) -> Iterator[tuple[str, str]]:
    """Yield (pointer, text) for every string holding an expression inside a JSON value."""
    if isinstance(value, str):
        if expr.has_expression(value):
            yield pointer, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{pointer}{join([key])}")
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from _strings(item, f"{pointer}/{position}")


@dataclass
class _ExpressionChecker:
    """Compiles every expression and checks its names against the scope where it sits."""

    flow: Flow
    ids: frozenset[str]
    found: list[Diagnostic]
    loop_names: set[str] = field(default_factory=set)

    def run(self) -> None:
        """Check the flow's outputs, defaults and every step."""
        self.loop_names = {
            step.as_ for _, step in iter_steps(self.flow.steps) if isinstance(step, ForeachStep)
        } | {"index"}
        document = self.flow.model_dump(mode="json", by_alias=True, exclude_none=True)
        for key in ("outputs", "defaults"):
            self._check_value(document[key], f"/{key}", BASE_SCOPE)
        self._check_block(self.flow.steps, "/steps", BASE_SCOPE)

    def _check_block(self, steps: Sequence[Step], pointer: str, scope: frozenset[str]) -> None:
        for position, step in enumerate(steps):
            here = f"{pointer}/{position}"
            self._check_step(step, here, scope)
            for suffix, block in child_blocks(step):
                self._check_block(block, here + suffix, _inner_scope(step, suffix, scope))

    def _check_step(self, step: Step, pointer: str, scope: frozenset[str]) -> None:
        exclude: Any = set(_CHILD_FIELDS & set(type(step).model_fields))
        if isinstance(step, SwitchStep):
            exclude = {"default": True, "cases": {"__all__": {"steps"}}}
        own = step.model_dump(mode="json", by_alias=True, exclude_none=True, exclude=exclude)
        for key, value in own.items():
            if key in _NOT_RENDERED:
                continue
            key_scope = scope
            if isinstance(step, ActionStep) and key == "with":
                key_scope = scope | {"secrets"}
            elif isinstance(step, ActionStep) and key == "check":
                key_scope = scope | {"output"}
            self._check_value(value, f"{pointer}/{key}", key_scope)

    def _check_value(self, value: Any, pointer: str, scope: frozenset[str]) -> None:
        for where, text in _strings(value, pointer):
            try:
                template = expr.compile_template(text, where)
            except ExpressionError as exc:
                self.found.append(Diagnostic(where, f"invalid expression: {exc.reason}"))
                continue
            self._check_template(template, where, scope)

    def _check_template(self, template: expr.Template, pointer: str, scope: frozenset[str]) -> None:
        names = set(template.names) | ({"secrets"} if template.secret_refs else set())
        for name in sorted(names - scope):
            self.found.append(Diagnostic(pointer, self._out_of_scope(name, scope)))
        for ref in sorted(template.step_refs - self.ids):
            known = ", ".join(sorted(self.ids))
            self.found.append(
                Diagnostic(pointer, f"unknown step {ref!r}; expected one of the step ids: {known}")
            )
        if "secrets" in scope:
            for secret in sorted(template.secret_refs - set(self.flow.requires.secrets)):
                self.found.append(
                    Diagnostic(
                        pointer, f"secret {secret!r} is used but not listed in requires.secrets"
                    )
                )

    def _out_of_scope(self, name: str, scope: frozenset[str]) -> str:
        if name in _WHERE:
            return _WHERE[name]
        if name in self.loop_names:
            return f"{name!r} is only in scope inside the foreach that defines it"
        return f"unknown name {name!r}; in scope here: {', '.join(sorted(scope))}"


def _inner_scope(step: Step, suffix: str, scope: frozenset[str]) -> frozenset[str]:
    if isinstance(step, ForeachStep):
        return scope | {step.as_, "index"}
    if isinstance(step, TryStep) and suffix == "/catch":
        return scope | {"error"}
    return scope
