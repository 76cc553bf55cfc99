"""Pydantic models of an amos.flow/v1 document: the single source of the DSL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainValidator,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import CoreSchema, core_schema

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from pydantic.json_schema import JsonSchemaValue

DSL_VERSION = "amos.flow/v1"
STEP_ID_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
FLOW_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
FLOW_REF_PATTERN = r"^[a-z][a-z0-9-]{0,62}(@[A-Za-z0-9._:+-]{1,128})?$"
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
DURATION_PATTERN = r"^[0-9]+(ms|s|m|h|d)$"
EXPRESSION_MARK = "${"
# Validation context flag set at run time: values have been rendered, so no `${` may remain.
RENDERED = "rendered"

# Names the loop variable may not take: the scope's own names and CEL's reserved words.
RESERVED_NAMES = frozenset(
    {"inputs", "vars", "steps", "config", "run", "secrets", "error", "output", "index"}
    | {"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for"}
    | {"function", "if", "import", "let", "loop", "package", "namespace", "return", "var"}
    | {"void", "while"}
)

_DURATION_RE = re.compile(DURATION_PATTERN)
_DURATION_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
}
EXPRESSION_JSON_SCHEMA: dict[str, Any] = {"type": "string", "pattern": r"\$\{"}

T = TypeVar("T")


def parse_duration(text: str) -> timedelta:
    """Turn a duration such as ``500ms``, ``30s``, ``5m``, ``2h`` or ``1d`` into a timedelta."""
    match = _DURATION_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"expected a duration like 500ms, 30s, 5m, 2h or 1d, got {text!r}")
    amount = int(text[: match.start(1)])
    try:
        return amount * _DURATION_UNITS[match.group(1)]
    except OverflowError:
        raise ValueError(f"duration {text!r} is too large") from None


def _is_rendered(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get(RENDERED))


def _may_be_expression(value: object, info: ValidationInfo) -> bool:
    return isinstance(value, str) and EXPRESSION_MARK in value and not _is_rendered(info)


def _check_duration(value: str, info: ValidationInfo) -> str:
    if _may_be_expression(value, info):
        return value
    try:
        parse_duration(value)
    except ValueError as exc:
        reason = str(exc) if "too large" in str(exc) else None
        raise ValueError(
            reason or "expected a duration like 500ms, 30s, 5m, 2h or 1d, or a ${…} expression"
        ) from None
    return value


def _check_expression_text(value: str, info: ValidationInfo) -> str:
    if EXPRESSION_MARK not in value or _is_rendered(info):
        raise ValueError("expected a ${…} expression")
    return value


def _check_condition(value: object, info: ValidationInfo) -> str | bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and EXPRESSION_MARK in value and not _is_rendered(info):
        return value
    raise ValueError("expected a boolean or a ${…} expression")


def _check_timestamp(value: str, info: ValidationInfo) -> str:
    if _may_be_expression(value, info):
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValueError(
            "expected an RFC 3339 time with an offset (2025-01-31T09:00:00Z) or a ${…} expression"
        )
    return value


@dataclass(frozen=True)
class OrExpression:
    """Marks a typed value that may also be written as a ``${…}`` expression string."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        """Wrap the value's own validation so an expression string passes until rendered."""
        # Serialised as found: before rendering the value may still be an expression string.
        return core_schema.with_info_wrap_validator_function(
            _or_expression, handler(source), serialization=core_schema.simple_ser_schema("any")
        )

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """Describe the value as its own schema or an expression string."""
        return {"anyOf": [handler(schema), dict(EXPRESSION_JSON_SCHEMA)]}


def _or_expression(
    value: Any, handler: core_schema.ValidatorFunctionWrapHandler, info: ValidationInfo
) -> Any:
    if _may_be_expression(value, info):
        return value
    return handler(value)


Expr = Annotated[T, OrExpression()]
"""A value of type T, or (before rendering) a ``${…}`` expression that will produce one."""

Duration = Annotated[
    str,
    AfterValidator(_check_duration),
    WithJsonSchema(
        {"type": "string", "pattern": r"^[0-9]+(ms|s|m|h|d)$|\$\{", "examples": ["500ms", "30s"]}
    ),
]
ExpressionText = Annotated[
    str, AfterValidator(_check_expression_text), WithJsonSchema(dict(EXPRESSION_JSON_SCHEMA))
]
Condition = Annotated[
    str | bool,
    PlainValidator(_check_condition),
    WithJsonSchema({"anyOf": [{"type": "boolean"}, dict(EXPRESSION_JSON_SCHEMA)]}),
]
Timestamp = Annotated[
    str,
    AfterValidator(_check_timestamp),
    WithJsonSchema({"type": "string", "anyOf": [{"format": "date-time"}, EXPRESSION_JSON_SCHEMA]}),
]
StepId = Annotated[str, StringConstraints(pattern=STEP_ID_PATTERN)]


class DslModel(BaseModel):
    """Base of every DSL model: closed vocabulary, immutable, JSON types only."""

    # strict: a document is JSON, so "3" is not an integer, as in the generated JSON Schema.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)


class RetryPolicy(DslModel):
    """How often and how fast a failed step is attempted again."""

    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff: Duration = "1s"
    max_backoff: Duration | None = None


class Defaults(DslModel):
    """Timeout and retry applied to every step that does not set its own."""

    timeout: Duration | None = None
    retry: RetryPolicy | None = None


class Requires(DslModel):
    """Config keys, secrets and runner capabilities the flow needs."""

    config: list[str] = Field(default_factory=list)
    secrets: list[str] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=list)


class RunnerSelector(DslModel):
    """Narrows where an action step may run."""

    zone: str | None = None
    capabilities: list[str] = Field(default_factory=list)


class StepBase(DslModel):
    """Keys every step has."""

    id: StepId
    name: str | None = None
    when: Condition | None = None
    timeout: Duration | None = None
    retry: RetryPolicy | None = None
    on_error: Literal["fail", "continue"] = "fail"


class ActionStep(StepBase):
    """One side effect, run as an activity; ``with_`` is kept as written."""

    type: Literal["action"] = "action"
    action: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    runner: RunnerSelector | None = None
    check: ExpressionText | None = None


class SetStep(StepBase):
    """Evaluates expressions into ``vars``."""

    type: Literal["set"] = "set"
    values: dict[str, Any]


class IfStep(StepBase):
    """A two-way branch."""

    type: Literal["if"] = "if"
    condition: Condition
    then: list[Step]
    else_: list[Step] = Field(default_factory=list, alias="else")


class SwitchCase(DslModel):
    """One arm of a switch; ``equals`` defaults to null."""

    equals: Any = None
    steps: list[Step]


class SwitchStep(StepBase):
    """A multi-way branch on one value."""

    type: Literal["switch"] = "switch"
    value: Any
    cases: list[SwitchCase]
    default: list[Step] = Field(default_factory=list)

    @field_validator("value")
    @classmethod
    def _value_not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("expected a value or a ${…} expression, not null")
        return value


class ForeachStep(StepBase):
    """A loop over a list, optionally concurrent."""

    type: Literal["foreach"] = "foreach"
    items: Expr[list[Any]]
    as_: Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN)] = Field(
        default="item", alias="as"
    )
    steps: list[Step]
    concurrency: int = Field(default=1, ge=1, le=100)

    @field_validator("as_")
    @classmethod
    def _as_not_reserved(cls, value: str) -> str:
        if value in RESERVED_NAMES:
            raise ValueError(f"{value!r} is a reserved name; choose another loop variable")
        return value


class WhileStep(StepBase):
    """A bounded loop."""

    type: Literal["while"] = "while"
    condition: Condition
    steps: list[Step]
    max_iterations: int = Field(ge=1, le=10000)


class ParallelStep(StepBase):
    """Branches run concurrently."""

    type: Literal["parallel"] = "parallel"
    branches: list[list[Step]] = Field(min_length=1)
    fail_fast: bool = True


class TryStep(StepBase):
    """Runs steps, handles their failure in ``catch`` and always runs ``finally``."""

    type: Literal["try"] = "try"
    steps: list[Step]
    catch: list[Step] = Field(default_factory=list)
    finally_: list[Step] = Field(default_factory=list, alias="finally")


class WaitStep(StepBase):
    """A durable timer: a duration or a point in time."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["duration"]}, {"required": ["until"]}]}
    )

    type: Literal["wait"] = "wait"
    duration: Duration | None = None
    until: Timestamp | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> WaitStep:
        if (self.duration is None) == (self.until is None):
            raise ValueError("expected exactly one of 'duration' or 'until'")
        return self


class HumanStep(StepBase):
    """A task for a person in the console inbox."""

    type: Literal["human"] = "human"
    task: Literal["approval", "form", "review"]
    title: str
    assignees: list[str] = Field(default_factory=list)
    form: dict[str, Any] | None = None
    sla: Duration | None = None
    escalate_to: list[str] = Field(default_factory=list)
    on_timeout: Literal["fail", "approve", "reject", "escalate"] = "fail"


class CallStep(StepBase):
    """Runs another catalog flow as a child run."""

    type: Literal["call"] = "call"
    flow: Annotated[str, StringConstraints(pattern=FLOW_REF_PATTERN)]
    inputs: dict[str, Any] = Field(default_factory=dict)


class FailStep(StepBase):
    """Stops the run as failed."""

    type: Literal["fail"] = "fail"
    message: str


class SucceedStep(StepBase):
    """Stops the run successfully now."""

    type: Literal["succeed"] = "succeed"


Step = Annotated[
    ActionStep
    | SetStep
    | IfStep
    | SwitchStep
    | ForeachStep
    | WhileStep
    | ParallelStep
    | TryStep
    | WaitStep
    | HumanStep
    | CallStep
    | FailStep
    | SucceedStep,
    Field(discriminator="type"),
]

STEP_CLASSES: dict[str, type[StepBase]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        ActionStep,
        SetStep,
        IfStep,
        SwitchStep,
        ForeachStep,
        WhileStep,
        ParallelStep,
        TryStep,
        WaitStep,
        HumanStep,
        CallStep,
        FailStep,
        SucceedStep,
    )
}


class Flow(DslModel):
    """One amos.flow/v1 document."""

    dsl: Literal["amos.flow/v1"]
    name: Annotated[str, StringConstraints(pattern=FLOW_NAME_PATTERN)]
    description: str | None = None
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    requires: Requires = Field(default_factory=Requires)
    defaults: Defaults = Field(default_factory=Defaults)
    steps: list[Step] = Field(min_length=1)

    def to_document(self) -> dict[str, Any]:
        """Serialise back to the JSON document shape."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


_RECURSIVE: tuple[type[BaseModel], ...] = (*STEP_CLASSES.values(), SwitchCase, Flow)
for _model in _RECURSIVE:
    _model.model_rebuild()


def child_blocks(step: Step) -> list[tuple[str, Sequence[Step]]]:
    """List a step's nested step lists with their pointers relative to the step."""
    if isinstance(step, IfStep):
        return [("/then", step.then), ("/else", step.else_)]
    if isinstance(step, SwitchStep):
        blocks = [(f"/cases/{i}/steps", case.steps) for i, case in enumerate(step.cases)]
        return [*blocks, ("/default", step.default)]
    if isinstance(step, ForeachStep | WhileStep):
        return [("/steps", step.steps)]
    if isinstance(step, ParallelStep):
        return [(f"/branches/{i}", branch) for i, branch in enumerate(step.branches)]
    if isinstance(step, TryStep):
        return [("/steps", step.steps), ("/catch", step.catch), ("/finally", step.finally_)]
    return []


def iter_steps(steps: Sequence[Step], pointer: str = "/steps") -> Iterator[tuple[str, Step]]:
    """Yield (JSON pointer, step) for every step at any depth, in document order."""
    for position, step in enumerate(steps):
        here = f"{pointer}/{position}"
        yield here, step
        for suffix, block in child_blocks(step):
            yield from iter_steps(block, here + suffix)


def step_index(flow: Flow) -> dict[str, Step]:
    """Map every step id in the flow to its step (the first one wins on duplicates)."""
    index: dict[str, Step] = {}
    for _, step in iter_steps(flow.steps):
        index.setdefault(step.id, step)
    return index
