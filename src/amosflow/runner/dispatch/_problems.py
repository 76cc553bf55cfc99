"""The runner endpoint's errors as RFC 9457 problem+json, the same documents the API answers.

The endpoint is not the API: it must not load it, and its callers are runners, which act on
the status alone. So it has this short table of the errors the runner protocol raises;
anything else is a 400, as on the API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from amosflow import errors

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

PROBLEM_TYPE = "application/problem+json"

# First match wins, so subclasses come before their parents.
_STATUS: tuple[tuple[type[errors.AmosError], int, str], ...] = (
    (errors.VaultSealedError, 503, "vault-sealed"),
    (errors.AuditError, 503, "audit-unavailable"),
    (errors.AuthenticationError, 401, "unauthenticated"),
    (errors.PermissionDeniedError, 403, "forbidden"),
    (errors.NotFoundError, 404, "not-found"),
    (errors.ConflictError, 409, "conflict"),
    (errors.ValidationFailedError, 422, "validation-failed"),
)


def _problem(status: int, title: str, detail: str, *, slug: str, **extra: Any) -> JSONResponse:
    body = {"type": f"urn:amosflow:problem:{slug}", "title": title, "status": status}
    body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_TYPE)


def status_for(err: errors.AmosError) -> tuple[int, str]:
    """The HTTP status and problem slug of an error the endpoint raised."""
    for kind, status, slug in _STATUS:
        if isinstance(err, kind):
            return status, slug
    return 400, "bad-request"


async def _on_amos_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.AmosError)
    status, slug = status_for(exc)
    extra: dict[str, Any] = {"code": exc.code}
    if isinstance(exc, errors.ValidationFailedError):
        extra["errors"] = [{"pointer": d.pointer, "detail": d.message} for d in exc.diagnostics]
    title = slug.replace("-", " ").capitalize()
    detail = str(exc).splitlines()[0] if str(exc) else title
    response = _problem(status, title, detail, slug=slug, **extra)
    if status == 401:  # noqa: PLR2004
        response.headers["WWW-Authenticate"] = 'Bearer realm="amosflow"'
    return response


async def _on_request_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    found = [
        {"pointer": "/" + "/".join(str(p) for p in e.get("loc", ())), "detail": e.get("msg", "")}
        for e in exc.errors()
    ]
    return _problem(
        422,
        "Invalid request",
        "the request does not match the API",
        slug="invalid-request",
        errors=found,
    )


async def _on_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return _problem(exc.status_code, str(exc.detail), str(exc.detail), slug="http-error")


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error of the endpoint into problem+json."""
    app.add_exception_handler(errors.AmosError, _on_amos_error)
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
