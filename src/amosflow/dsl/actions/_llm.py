"""The ``llm.generate`` action: one prompt to a configured model, optionally schema-bound."""

from __future__ import annotations

from typing import Annotated, Any

import jsonschema
from pydantic import Field, field_validator

from amosflow.dsl.actions._registry import ActionSpec, Expr, WithModel, register

MAX_PROMPT_CHARS = 256 * 1024
MAX_TOKENS = 32_768
MAX_TEMPERATURE = 2.0

Tokens = Annotated[int, Field(ge=1, le=MAX_TOKENS)]
Temperature = Annotated[float, Field(ge=0.0, le=MAX_TEMPERATURE)]


class LlmGenerateWith(WithModel):
    """``with`` of ``llm.generate``: a model definition's name, the prompt, an optional schema.

    ``prompt`` and ``system`` are interpolated like any string (``${…}``). With ``schema``
    (a JSON Schema, 2020-12) the schema is sent as the request's ``response_format`` so the
    server's constrained decoding keeps the answer inside it; the answer is validated again
    here, and an invalid one is sent back once or twice with the validation error before the
    step fails with ``SchemaMismatch``. Output: ``text``, ``json`` (with a schema), ``model``,
    ``model_id``, ``revision``, ``usage`` and ``attempts``.
    """

    model: str = Field(min_length=1, max_length=63, description="A model definition's name.")
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    system: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    max_tokens: Expr[Tokens] | None = None
    temperature: Expr[Temperature] | None = None

    @field_validator("schema_")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                jsonschema.Draft202012Validator.check_schema(value)
            except jsonschema.SchemaError as err:
                raise ValueError(f"not a valid JSON Schema: {err.message}") from None
        return value


register(
    ActionSpec(
        name="llm.generate",
        capability="llm",
        with_model=LlmGenerateWith,
        description="Prompts a configured model; with a schema, returns validated JSON.",
    )
)
