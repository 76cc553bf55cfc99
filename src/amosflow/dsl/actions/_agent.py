"""The ``agent.run`` action: a bounded agent whose tools are allowlisted MCP tools."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import Field, ValidationInfo, field_validator

from amosflow.dsl._models import EXPRESSION_MARK, RENDERED
from amosflow.dsl.actions._registry import (
    ActionSpec,
    Duration,
    Expr,
    WithModel,
    bounded_timeout,
    register,
)

MAX_INSTRUCTIONS_CHARS = 256 * 1024
MAX_ITERATIONS = 50
MAX_TOKENS = 1_000_000
MAX_TOOLS = 64
# server.tool: a server name (the catalog's name rule), a dot, the server's own tool name.
QUALIFIED_TOOL = r"^[a-z][a-z0-9-]{0,62}\.[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"

Iterations = Annotated[int, Field(ge=1, le=MAX_ITERATIONS)]
Tokens = Annotated[int, Field(ge=1, le=MAX_TOKENS)]
Autonomy = Literal["read_only", "supervised", "autonomous"]


class AgentRunWith(WithModel):
    """``with`` of ``agent.run``: a model, instructions, an input and allowlisted tools.

    The agent may call only the tools named in ``tools`` (qualified ``server.tool``), and
    only through the MCP gateway, which checks each call and returns a signed receipt; a
    tool result without a valid receipt fails the step. Budgets: ``max_iterations`` model
    requests, ``max_tokens`` tokens over the whole step, ``timeout`` of wall clock. When a
    budget runs out the step completes with ``stopped`` naming it and ``result`` null.

    ``autonomy``: ``read_only`` offers only tools the server declares read-only;
    ``supervised`` (the default) offers every tool but a call to one with side effects needs
    a human checkpoint, which agent steps cannot hold yet, so the step fails closed;
    ``autonomous`` lets the agent call them. ``tool_choice: required`` makes the model call a
    tool on every request (it then never answers in text: its budget ends the step).

    Output: ``result`` (text, or JSON valid against ``output_schema``), ``stopped``,
    ``iterations``, ``tool_calls`` (each with its receipt), ``usage``, ``model``, ``revision``.
    """

    model: str = Field(min_length=1, max_length=63, description="A model definition's name.")
    instructions: str = Field(min_length=1, max_length=MAX_INSTRUCTIONS_CHARS)
    input: Any = None
    tools: Expr[list[str]] = Field(default_factory=list)
    max_iterations: Expr[Iterations] = 5
    max_tokens: Expr[Tokens] = 8192
    output_schema: dict[str, Any] | None = None
    timeout: Duration = "2m"
    autonomy: Expr[Autonomy] = "supervised"
    tool_choice: Expr[Literal["auto", "required"]] = "auto"

    @field_validator("tools")
    @classmethod
    def _qualified(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, list):
            if len(value) > MAX_TOOLS:
                raise ValueError(f"at most {MAX_TOOLS} tools")
            rendered = isinstance(info.context, dict) and bool(info.context.get(RENDERED))
            for name in value:
                if not isinstance(name, str) or (EXPRESSION_MARK in name and not rendered):
                    continue
                if not re.match(QUALIFIED_TOOL, name):
                    raise ValueError(f"tool {name!r} is not a qualified name server.tool")
        return value

    @field_validator("output_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                jsonschema.Draft202012Validator.check_schema(value)
            except jsonschema.SchemaError as err:
                raise ValueError(f"not a valid JSON Schema: {err.message}") from None
            if value.get("type") != "object":
                raise ValueError("output_schema must describe an object (type: object)")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout_bounds(cls, value: str, info: ValidationInfo) -> str:
        return bounded_timeout(value, info, "1h")


register(
    ActionSpec(
        name="agent.run",
        capability="llm",
        with_model=AgentRunWith,
        description=(
            "Runs a bounded agent (iterations, tokens, wall clock, autonomy) with allowlisted"
            " MCP tools through the governed gateway; returns result, iterations, tool_calls"
            " with their receipts, and usage."
        ),
    )
)
