"""The ``browser.run`` action: a list of commands on a fresh browser context.

``commands`` is a union discriminated by ``do``. Each command is validated by the model its
``do`` names and typed as their common base, so a diagnostic points at the command's own keys
(``/commands/2/selector``) rather than at a union label, while the JSON Schema shows the union.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import (
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    SerializeAsAny,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    WrapValidator,
    field_validator,
    model_validator,
)

from amosflow.dsl._models import IDENTIFIER_PATTERN
from amosflow.dsl.actions._registry import ActionSpec, Duration, Expr, WithModel, register

if TYPE_CHECKING:
    from pydantic.json_schema import JsonSchemaValue
    from pydantic_core import CoreSchema, core_schema

MAX_COMMANDS = 200
DEFAULT_TIMEOUT = "30s"

Name = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN)]
Width = Annotated[int, Field(ge=100, le=7680)]
Height = Annotated[int, Field(ge=100, le=4320)]


class BrowserCommand(WithModel):
    """Base of every command: ``do`` names the command's model."""

    do: str


class BrowserGoto(BrowserCommand):
    """Open ``url`` (http or https) and wait for its load event."""

    do: Literal["goto"]
    url: str


class BrowserClick(BrowserCommand):
    """Click the one element ``selector`` matches; ``download``: the click starts a download."""

    do: Literal["click"]
    selector: str
    download: Expr[bool] = False


class BrowserFill(BrowserCommand):
    """Type ``value`` into the one input ``selector`` matches.

    ``value`` is a plain string so a ``${secrets.NAME}`` reference in it stays a secret slot,
    filled only where the action runs (as in ``http.request`` headers).
    """

    do: Literal["fill"]
    selector: str
    value: str


class BrowserSelect(BrowserCommand):
    """Choose the option of the one ``<select>`` ``selector`` matches, by value or label."""

    do: Literal["select"]
    selector: str
    value: str


class BrowserWaitFor(BrowserCommand):
    """Wait until the first element ``selector`` matches reaches ``state``."""

    do: Literal["wait_for"]
    selector: str
    state: Expr[Literal["visible", "attached", "hidden"]] = "visible"
    timeout: Duration | None = None


class BrowserExtract(BrowserCommand):
    """Read the page into ``extracted[name]``.

    ``text``: the inner text of the one matching element; ``attribute``: its ``attribute``
    (null when absent); ``all_text``: the inner texts of every match (a list); ``table``: the
    one matching table (or the table inside it) as a list of row objects keyed by the header
    cells.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"kind": {"const": "attribute"}}, "required": ["kind"]},
            "then": {"required": ["attribute"]},
            "else": {"not": {"required": ["attribute"]}},
        }
    )

    do: Literal["extract"]
    name: Name
    selector: str
    kind: Literal["text", "attribute", "table", "all_text"] = "text"
    attribute: str | None = None

    @model_validator(mode="after")
    def _attribute_with_its_kind(self) -> Self:
        if (self.kind == "attribute") != (self.attribute is not None):
            raise ValueError("'attribute' is required with kind 'attribute' and only with it")
        return self


class BrowserScreenshot(BrowserCommand):
    """Store a PNG of the page as an artifact under ``screenshots[name]``."""

    do: Literal["screenshot"]
    name: Name
    full_page: Expr[bool] = False


COMMAND_MODELS: dict[str, type[BrowserCommand]] = {
    "goto": BrowserGoto,
    "click": BrowserClick,
    "fill": BrowserFill,
    "select": BrowserSelect,
    "wait_for": BrowserWaitFor,
    "extract": BrowserExtract,
    "screenshot": BrowserScreenshot,
}
_UNION: TypeAdapter[Any] = TypeAdapter(
    Annotated[
        BrowserGoto
        | BrowserClick
        | BrowserFill
        | BrowserSelect
        | BrowserWaitFor
        | BrowserExtract
        | BrowserScreenshot,
        Field(discriminator="do"),
    ]
)


def _by_do(
    value: Any, handler: core_schema.ValidatorFunctionWrapHandler, info: ValidationInfo
) -> Any:
    """Validate a command with the model its ``do`` names; unknown keys are named here."""
    if isinstance(value, BrowserCommand):
        return handler(value)
    if not isinstance(value, dict):
        raise ValueError("expected an object with a 'do' key")  # noqa: TRY004 - Pydantic wants ValueError
    known = ", ".join(COMMAND_MODELS)
    if "do" not in value:
        raise ValueError(f"missing required key 'do'; expected one of: {known}")
    model = COMMAND_MODELS.get(value["do"]) if isinstance(value["do"], str) else None
    if model is None:
        raise ValueError(f"unknown command {value['do']!r} in 'do'; expected one of: {known}")
    unknown = [key for key in value if key not in model.model_fields]
    if unknown:
        raise ValueError(
            f"unknown key {unknown[0]!r} in a {value['do']} command;"
            f" expected one of: {', '.join(model.model_fields)}"
        )
    return model.model_validate(value, context=info.context)


class _UnionSchema:
    """Describes a command in the JSON Schema as the discriminated union of the models."""

    def __get_pydantic_json_schema__(
        self, _schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return handler(_UNION.core_schema)


Command = Annotated[SerializeAsAny[BrowserCommand], WrapValidator(_by_do), _UnionSchema()]


class BrowserViewport(WithModel):
    """The page size in CSS pixels."""

    width: Expr[Width] = 1280
    height: Expr[Height] = 720


class BrowserRunWith(WithModel):
    """``with`` of ``browser.run``: the commands, the per-command timeout and the viewport."""

    commands: list[Command] = Field(min_length=1, max_length=MAX_COMMANDS)
    timeout: Duration = DEFAULT_TIMEOUT
    viewport: BrowserViewport = Field(default_factory=BrowserViewport)

    @field_validator("commands")
    @classmethod
    def _unique_names(cls, commands: list[BrowserCommand]) -> list[BrowserCommand]:
        first: dict[tuple[str, str], int] = {}
        for index, command in enumerate(commands):
            if not isinstance(command, BrowserExtract | BrowserScreenshot):
                continue
            known = first.setdefault((command.do, command.name), index)
            if known != index:
                raise ValueError(
                    f"duplicate {command.do} name {command.name!r} at /commands/{index},"
                    f" first at /commands/{known}"
                )
        return commands


register(
    ActionSpec(
        name="browser.run",
        capability="browser",
        with_model=BrowserRunWith,
        description=(
            "Runs browser commands (goto, click, fill, select, wait_for, extract, screenshot)"
            " in a fresh browser context; returns extracted values, the final url and artifact"
            " references of screenshots and downloads."
        ),
    )
)
