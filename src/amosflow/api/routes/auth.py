"""/api/v1/auth, /api/v1/me and /api/v1/setup: getting credentials, and managing one's own.

Sign-in and the client-credentials grant are the only public routes that read a secret, so
they are the ones brute force aims at: both are rate limited per address before anything
else happens, every attempt is audited, and a refusal never says which part was wrong.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from amosflow.api import _problems as problems
from amosflow.api._deps import AuthenticatorDep, ControlPlaneDep
from amosflow.api._security import CallerDep
from amosflow.errors import Diagnostic, ValidationFailedError
from amosflow.identity import Principal
from amosflow.services import auth as auth_service

router = APIRouter(tags=["auth"], responses=problems.RESPONSES)
_RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    401: problems.documented("Credentials refused"),
    429: problems.documented("Too many attempts; see Retry-After"),
}


class Login(BaseModel):
    """A local account's credentials."""

    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)


class AccessToken(BaseModel):
    """A short-lived session token (RFC 6750 bearer)."""

    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - the RFC 6750 scheme name, not a secret
    expires_in: int = Field(description="Seconds until it expires.")
    expires_at: datetime


class Me(BaseModel):
    """Who the caller is and what it may do where."""

    id: str
    username: str
    kind: str
    via: str
    groups: list[str]
    bindings: list[dict[str, Any]]


class TokenCreate(BaseModel):
    """A personal API token to issue."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] | None = Field(
        default=None, description="Permissions it is limited to; all of the owner's when absent."
    )
    expires_in_days: int | None = Field(default=None, ge=1)


class TokenPublic(BaseModel):
    """A personal API token's metadata; never the token."""

    id: str
    name: str
    scopes: list[str] | None
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime


class TokenIssued(TokenPublic):
    """A new token: the only answer that ever carries it."""

    token: str


class SetupRequest(BaseModel):
    """The first administrator, created with the one-time setup token."""

    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=200)
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _token(issued: auth_service.SessionToken) -> AccessToken:
    return AccessToken(
        access_token=issued.token, expires_in=issued.expires_in, expires_at=issued.expires_at
    )


@router.post("/api/v1/auth/login", response_model=AccessToken, responses=_RATE_LIMITED)
def login(
    body: Login, request: Request, cp: ControlPlaneDep, authenticator: AuthenticatorDep
) -> AccessToken:
    """Sign in with a local account; answers a session token."""
    authenticator.throttle(_address(request), purpose="login")
    issued = auth_service.sign_in(
        cp.store, authenticator, body.username, body.password, address=_address(request)
    )
    return _token(issued)


def _form(raw: bytes) -> dict[str, str]:
    try:
        parsed = parse_qs(raw.decode(), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        parsed = {}
    return {key: values[0] for key, values in parsed.items() if values}


_TOKEN_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type", "client_id", "client_secret"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string"},
                    },
                }
            }
        },
    }
}


@router.post(
    "/api/v1/auth/token",
    response_model=AccessToken,
    responses=_RATE_LIMITED,
    openapi_extra=_TOKEN_FORM,
)
async def client_token(
    request: Request, cp: ControlPlaneDep, authenticator: AuthenticatorDep
) -> AccessToken:
    """OAuth 2.0 client credentials grant (RFC 6749 §4.4) for service accounts."""
    authenticator.throttle(_address(request), purpose="login")
    form = _form(await request.body())
    if form.get("grant_type") != "client_credentials":
        raise ValidationFailedError(
            [Diagnostic("/grant_type", "only client_credentials is supported")]
        )
    client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    issued = auth_service.client_credentials(
        cp.store, authenticator, client_id, secret, address=_address(request)
    )
    return _token(issued)


def _me(caller: Principal) -> Me:
    return Me(
        id=caller.id,
        username=caller.username,
        kind=caller.kind,
        via=caller.via,
        groups=list(caller.groups),
        bindings=[
            {"role": b.role, "folder": b.folder, "condition": b.condition} for b in caller.bindings
        ],
    )


@router.get("/api/v1/me", response_model=Me)
def whoami(caller: CallerDep) -> Me:
    """The caller, its groups and its role bindings."""
    return _me(caller)


def _token_public(row: object) -> TokenPublic:
    return TokenPublic.model_validate(row, from_attributes=True)


@router.get("/api/v1/me/tokens", response_model=list[TokenPublic])
def list_tokens(cp: ControlPlaneDep, caller: CallerDep) -> list[TokenPublic]:
    """The caller's personal API tokens (metadata only)."""
    return [_token_public(row) for row in auth_service.list_tokens(cp.store, caller)]


@router.post("/api/v1/me/tokens", status_code=status.HTTP_201_CREATED, response_model=TokenIssued)
def create_token(
    body: TokenCreate, cp: ControlPlaneDep, caller: CallerDep, authenticator: AuthenticatorDep
) -> TokenIssued:
    """Issue a personal API token; the answer is the only time the token is shown.

    A token can only narrow what its owner may do, and a scoped token cannot mint a wider one.
    """
    row, plaintext = auth_service.create_token(
        cp.store,
        caller,
        name=body.name,
        scopes=body.scopes,
        expires_in_days=body.expires_in_days,
        settings=authenticator.settings,
    )
    return TokenIssued(**_token_public(row).model_dump(), token=plaintext)


@router.delete("/api/v1/me/tokens/{token_id}", response_model=TokenPublic)
def revoke_token(token_id: str, cp: ControlPlaneDep, caller: CallerDep) -> TokenPublic:
    """Revoke one of the caller's tokens; it stops working at once."""
    return _token_public(auth_service.revoke_token(cp.store, caller, token_id))


@router.post(
    "/api/v1/setup",
    status_code=status.HTTP_201_CREATED,
    response_model=Me,
    responses=_RATE_LIMITED,
)
def first_admin(
    body: SetupRequest, request: Request, cp: ControlPlaneDep, authenticator: AuthenticatorDep
) -> Me:
    """Create the first administrator with the one-time setup token `amos up` printed."""
    authenticator.throttle(_address(request), purpose="login")
    principal = auth_service.first_admin(
        cp.store,
        authenticator.settings,
        token=body.token,
        username=body.username,
        password=body.password,
        address=_address(request),
    )
    return _me(principal)


_SETUP_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>AMOS FLOW setup</title></head>
<body><h1>Create the first administrator</h1>
<p>POST <code>/api/v1/setup</code> with <code>{"token": …, "username": …, "password": …}</code>,
using the token from this page's address. The token works once.</p>
<form id="f"><label>Username <input name="username" required></label>
<label>Password <input name="password" type="password" minlength="12" required></label>
<button>Create</button></form><pre id="out"></pre>
<script>
document.getElementById("f").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  const token = new URLSearchParams(location.search).get("token") || "";
  const res = await fetch("/api/v1/setup", {method: "POST",
    headers: {"content-type": "application/json"},
    body: JSON.stringify({token, username: form.get("username"), password: form.get("password")})});
  document.getElementById("out").textContent = res.ok ? "Created. Sign in now." : await res.text();
});
</script></body></html>"""


@router.get("/setup", response_class=HTMLResponse, include_in_schema=False)
def setup_page() -> HTMLResponse:
    """The page the one-time setup link opens; it only posts to /api/v1/setup."""
    return HTMLResponse(_SETUP_PAGE, headers={"Cache-Control": "no-store"})
