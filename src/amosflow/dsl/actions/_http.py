"""The ``http.request`` action."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from amosflow.dsl.actions._registry import ActionSpec, Duration, Expr, WithModel, register

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class HttpRequestWith(WithModel):
    """``with`` of ``http.request``: one HTTP call and the statuses it accepts."""

    model_config = ConfigDict(json_schema_extra={"not": {"required": ["json", "body"]}})

    method: Expr[HttpMethod] = "GET"
    url: str
    headers: Expr[dict[str, str]] = Field(default_factory=dict)
    query: Expr[dict[str, Any]] = Field(default_factory=dict)
    json_: Any = Field(default=None, alias="json")
    body: str | None = None
    timeout: Duration | None = None
    expect: Expr[list[Expr[int]]] | None = None
    follow_redirects: Expr[bool] = False  # at most 5 hops, each checked like the first

    @model_validator(mode="after")
    def _json_or_body(self) -> Self:
        if {"json_", "body"} <= self.model_fields_set:
            raise ValueError("'json' and 'body' are mutually exclusive; give one of them")
        return self


register(
    ActionSpec(
        name="http.request",
        capability="http",
        with_model=HttpRequestWith,
        description="Sends one HTTP request; returns status, headers, json and text.",
    )
)
