"""Errors as RFC 9457 problem+json: the one table from error to HTTP status."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from amosflow import errors

PROBLEM_TYPE = "application/problem+json"


class ProblemDetail(BaseModel):
    """One located problem inside a 422 answer."""

    pointer: str = Field(description="JSON Pointer (RFC 6901) of the offending value.")
    detail: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str
    code: str | None = None
    errors: list[ProblemDetail] | None = None


def documented(description: str) -> dict[str, Any]:
    """An OpenAPI response entry whose body is a problem+json document."""
    return {
        "description": description,
        "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def component_schemas() -> dict[str, Any]:
    """The OpenAPI component schemas of Problem and ProblemDetail."""
    _, top = models_json_schema(
        [(Problem, "serialization")], ref_template="#/components/schemas/{model}"
    )
    defs: dict[str, Any] = top.get("$defs", {})
    return defs


# Every route answers these as problem+json; declaring them keeps the spec honest.
RESPONSES: dict[int | str, dict[str, Any]] = {
    400: documented("Bad request"),
    401: documented("No valid credentials"),
    403: documented("The caller may not do this"),
    404: documented("Not found"),
    409: documented("Conflict"),
    422: documented("Invalid request or document"),
    503: documented("A dependency is unavailable"),
}

# First match wins, so subclasses come before their parents.
_STATUS: tuple[tuple[type[errors.AmosError], int, str], ...] = (
    (errors.VaultSealedError, 503, "vault-sealed"),
    (errors.AuditError, 503, "audit-unavailable"),
    (errors.RateLimitedError, 429, "rate-limited"),
    (errors.AuthenticationError, 401, "unauthenticated"),
    (errors.PermissionDeniedError, 403, "forbidden"),
    (errors.NotFoundError, 404, "not-found"),
    (errors.ConflictError, 409, "conflict"),
    (errors.ValidationFailedError, 422, "validation-failed"),
    (errors.ExpressionError, 422, "expression-error"),
    (errors.UnknownActionError, 422, "unknown-action"),
    (errors.EngineError, 503, "engine-unavailable"),
    (errors.McpError, 502, "mcp-server-unavailable"),
    (errors.AmosError, 400, "bad-request"),
)


def problem(status: int, title: str, detail: str, *, slug: str, **extra: Any) -> JSONResponse:
    """Build one problem+json response."""
    body = {"type": f"urn:amosflow:problem:{slug}", "title": title, "status": status}
    body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_TYPE)


def status_for(err: errors.AmosError) -> tuple[int, str]:
    """The HTTP status and problem slug of an error."""
    for kind, status, slug in _STATUS:
        if isinstance(err, kind):
            return status, slug
    return 400, "bad-request"


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem+json."""

    async def on_amos_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.AmosError)
        status, slug = status_for(exc)
        extra: dict[str, Any] = {"code": exc.code}
        if isinstance(exc, errors.ValidationFailedError):
            extra["errors"] = [{"pointer": d.pointer, "detail": d.message} for d in exc.diagnostics]
        title = slug.replace("-", " ").capitalize()
        response = problem(
            status, title, str(exc).splitlines()[0] if str(exc) else title, slug=slug, **extra
        )
        if isinstance(exc, errors.RateLimitedError):
            response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        if isinstance(exc, errors.AuthenticationError) and status == 401:  # noqa: PLR2004
            response.headers["WWW-Authenticate"] = 'Bearer realm="amosflow"'
        return response

    async def on_request_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        found = [
            {
                "pointer": "/" + "/".join(str(p) for p in e.get("loc", ())),
                "detail": e.get("msg", ""),
            }
            for e in exc.errors()
        ]
        return problem(
            422,
            "Invalid request",
            "the request does not match the API",
            slug="invalid-request",
            errors=found,
        )

    async def on_http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem(exc.status_code, str(exc.detail), str(exc.detail), slug="http-error")

    app.add_exception_handler(errors.AmosError, on_amos_error)
    app.add_exception_handler(RequestValidationError, on_request_validation)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
