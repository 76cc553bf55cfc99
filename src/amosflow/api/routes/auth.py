"""/api/v1/auth, /api/v1/me and /api/v1/setup: getting credentials, and managing one's own.

Sign-in and the client-credentials grant are the only public routes that read a secret, so
they are the ones brute force aims at: both are rate limited per address before anything
else happens, every attempt is audited, and a refusal never says which part was wrong.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from amosflow import audit, identity
from amosflow.api import problems
from amosflow.api.deps import ControlPlaneDep
from amosflow.api.security import CallerDep
from amosflow.errors import AuthenticationError, Diagnostic, ValidationFailedError
from amosflow.identity import CREDENTIALS_REFUSED as GENERIC
from amosflow.identity import Authenticator, actor_of
from amosflow.store.tables import INSTALL_FOLDER

router = APIRouter(tags=["auth"], responses=problems.RESPONSES)
_RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    401: problems.documented("Credentials refused"),
    429: problems.documented("Too many attempts; see Retry-After"),
}


def _authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator


AuthenticatorDep = Annotated[Authenticator, Depends(_authenticator)]


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


def _issue(authenticator: Authenticator, principal_id: str) -> AccessToken:
    token, expires_at = authenticator.signer.issue(principal_id)
    return AccessToken(
        access_token=token,
        expires_in=authenticator.settings.session_ttl_seconds,
        expires_at=expires_at,
    )


def _record_attempt(
    session: Session, action: str, attempt: identity.LoginAttempt, details: dict[str, Any]
) -> None:
    """Audit a sign-in in the transaction that records its failure counter."""
    if attempt.ok and attempt.principal is not None:
        actor = actor_of(attempt.principal.kind, attempt.principal.username)
        audit.append(
            session,
            folder=INSTALL_FOLDER,
            actor=actor,
            action=action,
            resource="auth",
            details=details,
        )
        return
    refusal = attempt.refusal
    details = details | {"reason": refusal.reason if refusal else "unknown"}
    if refusal is not None and refusal.locked_now:
        details["locked"] = True
    audit.append(
        session,
        folder=INSTALL_FOLDER,
        actor="anonymous",
        action=action,
        resource="auth",
        outcome="denied",
        details=details,
    )


def _record(
    cp: ControlPlaneDep, action: str, actor: str, outcome: str, details: dict[str, Any]
) -> None:
    with cp.store.session() as session:
        audit.append(
            session,
            folder=INSTALL_FOLDER,
            actor=actor,
            action=action,
            resource="auth",
            outcome=outcome,
            details=details,
        )


@router.post("/api/v1/auth/login", response_model=AccessToken, responses=_RATE_LIMITED)
def login(
    body: Login, request: Request, cp: ControlPlaneDep, authenticator: AuthenticatorDep
) -> AccessToken:
    """Sign in with a local account; answers a session token."""
    authenticator.throttle(_address(request), purpose="login")
    details = {"username": body.username, "address": _address(request)}
    with cp.store.session() as session:
        attempt = identity.attempt_password(
            session, body.username, body.password, settings=authenticator.settings
        )
        _record_attempt(session, "auth.login", attempt, details)
    if attempt.principal is None or not attempt.ok:
        raise AuthenticationError("invalid username or password")
    return _issue(authenticator, attempt.principal.id)


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
    details = {"client_id": client_id[:200], "address": _address(request)}
    with cp.store.session() as session:
        attempt = identity.attempt_client(
            session, client_id, secret, settings=authenticator.settings
        )
        _record_attempt(session, "auth.client_token", attempt, details)
    if attempt.principal is None or not attempt.ok:
        raise AuthenticationError(GENERIC)
    return _issue(authenticator, attempt.principal.id)


@router.get("/api/v1/me", response_model=Me)
def whoami(caller: CallerDep) -> Me:
    """The caller, its groups and its role bindings."""
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


def _token_public(row: object) -> TokenPublic:
    return TokenPublic.model_validate(row, from_attributes=True)


@router.get("/api/v1/me/tokens", response_model=list[TokenPublic])
def list_tokens(cp: ControlPlaneDep, caller: CallerDep) -> list[TokenPublic]:
    """The caller's personal API tokens (metadata only)."""
    with cp.store.session(read_only=True) as session:
        return [_token_public(row) for row in identity.list_api_tokens(session, caller.id)]


@router.post("/api/v1/me/tokens", status_code=status.HTTP_201_CREATED, response_model=TokenIssued)
def create_token(
    body: TokenCreate, cp: ControlPlaneDep, caller: CallerDep, authenticator: AuthenticatorDep
) -> TokenIssued:
    """Issue a personal API token; the answer is the only time the token is shown.

    A token can only narrow what its owner may do, and a scoped token cannot mint a wider one.
    """
    wanted = set(body.scopes) if body.scopes is not None else None
    if caller.scopes is not None and (wanted is None or not wanted <= caller.scopes):
        raise ValidationFailedError(
            [Diagnostic("/scopes", "cannot exceed the scopes of the token in use")]
        )
    with cp.store.session() as session:
        row, plaintext = identity.issue_api_token(
            session,
            principal_id=caller.id,
            name=body.name,
            scopes=body.scopes,
            expires_in_days=body.expires_in_days,
            settings=authenticator.settings,
        )
        audit.append(
            session,
            folder=INSTALL_FOLDER,
            actor=caller.actor,
            action="identity.create",
            resource=f"tokens/{row.id}",
            details={"name": body.name, "scopes": body.scopes},
        )
        issued = _token_public(row)
    return TokenIssued(**issued.model_dump(), token=plaintext)


@router.delete("/api/v1/me/tokens/{token_id}", response_model=TokenPublic)
def revoke_token(token_id: str, cp: ControlPlaneDep, caller: CallerDep) -> TokenPublic:
    """Revoke one of the caller's tokens; it stops working at once."""
    with cp.store.session() as session:
        row = identity.revoke_api_token(session, caller.id, token_id)
        audit.append(
            session,
            folder=INSTALL_FOLDER,
            actor=caller.actor,
            action="identity.revoke",
            resource=f"tokens/{token_id}",
            details={},
        )
        return _token_public(row)


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
    settings = authenticator.settings
    with cp.store.session() as session:
        if identity.setup_complete(session):
            raise AuthenticationError(GENERIC)
    if not identity.consume_setup_token(settings, body.token):
        _record(cp, "auth.setup", "anonymous", "denied", {"address": _address(request)})
        raise AuthenticationError(GENERIC)
    with cp.store.session() as session:
        row = identity.create_first_admin(
            session, username=body.username, password=body.password, settings=settings
        )
        audit.append(
            session,
            folder=INSTALL_FOLDER,
            actor=actor_of("user", row.username),
            action="auth.setup",
            resource=f"principals/{row.id}",
            details={"address": _address(request)},
        )
        principal = identity.to_principal(session, row, via="session")
    return whoami(principal)


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
