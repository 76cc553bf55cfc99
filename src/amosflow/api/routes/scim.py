"""/scim/v2: SCIM 2.0 provisioning of users and groups from the enterprise IdP (RFC 7643/7644).

Deactivating a user (``active: false``, or DELETE) revokes every session and API token it
holds in the same transaction, so an IdP offboarding takes effect on the next request.
Errors use SCIM's own error schema, which is what IdP connectors parse.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from amosflow import identity
from amosflow.api import problems
from amosflow.api.deps import ControlPlaneDep
from amosflow.api.security import CallerDep
from amosflow.errors import AmosError, Diagnostic, ValidationFailedError
from amosflow.identity import IdentitySettings, authorize
from amosflow.services import auditing
from amosflow.store.tables import GroupRow, PrincipalRow

SCIM_TYPE = "application/scim+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
_FILTER = re.compile(r'^\s*(\w+)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*$', re.IGNORECASE)
_MEMBER_PATH = re.compile(r'^members\[value\s+eq\s+"([^"]+)"\]$', re.IGNORECASE)


class ScimResponse(JSONResponse):
    """A JSON answer labelled as SCIM (RFC 7644 §3.1)."""

    media_type = SCIM_TYPE


class ScimRoute(APIRoute):
    """Answers every AmosError of a SCIM route in SCIM's error format."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the handler so errors become SCIM error documents."""
        handler = super().get_route_handler()

        async def scim_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as err:
                body = {
                    "schemas": [ERROR_SCHEMA],
                    "status": "400",
                    "scimType": "invalidSyntax",
                    "detail": "; ".join(
                        f"{'/'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
                        for e in err.errors()
                    )[:2000],
                }
                return ScimResponse(body, status_code=400)
            except StarletteHTTPException as err:
                body = {"schemas": [ERROR_SCHEMA], "status": str(err.status_code)}
                body["detail"] = str(err.detail)
                return ScimResponse(body, status_code=err.status_code)
            except AmosError as err:
                code, _ = problems.status_for(err)
                body = {"schemas": [ERROR_SCHEMA], "status": str(code), "detail": str(err)}
                if isinstance(err, ValidationFailedError):
                    body["scimType"] = "invalidValue"
                return ScimResponse(body, status_code=code)

        return scim_handler


def _scim_error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {SCIM_TYPE: {"schema": {"type": "object"}}}}


router = APIRouter(
    prefix="/scim/v2",
    tags=["scim"],
    route_class=ScimRoute,
    default_response_class=ScimResponse,
    responses={
        400: _scim_error("Bad request"),
        401: problems.documented("No valid credentials"),
        403: _scim_error("The caller may not provision identities"),
        404: _scim_error("Not found"),
        409: _scim_error("Conflict"),
        422: _scim_error("Invalid request"),
        503: _scim_error("A dependency is unavailable"),
    },
)


class ScimUser(BaseModel):
    """A SCIM User as IdPs send it; unknown attributes are ignored, as RFC 7644 allows."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    user_name: str = Field(alias="userName", min_length=1, max_length=200)
    external_id: str | None = Field(default=None, alias="externalId", max_length=200)
    display_name: str | None = Field(default=None, alias="displayName", max_length=200)
    emails: list[dict[str, Any]] = Field(default_factory=list)
    active: bool = True


class ScimMember(BaseModel):
    """A member reference inside a Group."""

    model_config = ConfigDict(extra="ignore")
    value: str = Field(min_length=1, max_length=64)


class ScimGroup(BaseModel):
    """A SCIM Group."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    display_name: str = Field(alias="displayName", min_length=1, max_length=200)
    external_id: str | None = Field(default=None, alias="externalId", max_length=200)
    members: list[ScimMember] = Field(default_factory=list)


class PatchOperation(BaseModel):
    """One PATCH operation."""

    model_config = ConfigDict(extra="ignore")
    op: str = Field(pattern=r"(?i)^(add|remove|replace)$")
    path: str | None = Field(default=None, max_length=200)
    value: Any = None


class PatchRequest(BaseModel):
    """A SCIM PatchOp message."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    operations: list[PatchOperation] = Field(alias="Operations", min_length=1, max_length=100)


def _settings(request: Request) -> IdentitySettings:
    settings: IdentitySettings = request.app.state.authenticator.settings
    return settings


def _stamp(value: Any) -> str:
    return str(value.isoformat())


def _email(user: ScimUser) -> str | None:
    for entry in user.emails:
        if entry.get("primary") and isinstance(entry.get("value"), str):
            return str(entry["value"])
    first = user.emails[0].get("value") if user.emails else None
    return first if isinstance(first, str) else None


def _user_doc(session: Session, row: PrincipalRow) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemas": [USER_SCHEMA],
        "id": row.id,
        "userName": row.username,
        "displayName": row.display_name,
        "active": row.active,
        "groups": [
            {"value": g.id, "display": g.display_name} for g in identity.groups_of(session, row.id)
        ],
        "meta": {
            "resourceType": "User",
            "created": _stamp(row.created_at),
            "lastModified": _stamp(row.updated_at),
            "location": f"/scim/v2/Users/{row.id}",
        },
    }
    if row.external_id:
        doc["externalId"] = row.external_id
    if row.email:
        doc["emails"] = [{"value": row.email, "primary": True}]
    return doc


def _group_doc(session: Session, row: GroupRow) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemas": [GROUP_SCHEMA],
        "id": row.id,
        "displayName": row.display_name,
        "members": [
            {"value": m.id, "display": m.username} for m in identity.group_members(session, row.id)
        ],
        "meta": {
            "resourceType": "Group",
            "created": _stamp(row.created_at),
            "lastModified": _stamp(row.updated_at),
            "location": f"/scim/v2/Groups/{row.id}",
        },
    }
    if row.external_id:
        doc["externalId"] = row.external_id
    return doc


def _scim(body: dict[str, Any], code: int = 200) -> JSONResponse:
    return ScimResponse(body, status_code=code)


def _listing(resources: list[dict[str, Any]], start: int, count: int) -> JSONResponse:
    page = resources[start - 1 : start - 1 + count]
    return _scim(
        {
            "schemas": [LIST_SCHEMA],
            "totalResults": len(resources),
            "startIndex": start,
            "itemsPerPage": len(page),
            "Resources": page,
        }
    )


def _filter(expression: str | None, allowed: set[str]) -> tuple[str, str] | None:
    if expression is None:
        return None
    found = _FILTER.match(expression)
    if found is None or found.group(1) not in allowed:
        raise ValidationFailedError(
            [Diagnostic("/filter", f'supported filters: {", ".join(sorted(allowed))} eq "…"')]
        )
    return found.group(1), found.group(2).replace('\\"', '"')


Start = Annotated[int, Query(alias="startIndex", ge=1)]
Count = Annotated[int, Query(ge=0, le=1000)]
FilterQuery = Annotated[str | None, Query(alias="filter", max_length=500)]


@router.get("/Users")
def list_users(
    cp: ControlPlaneDep,
    caller: CallerDep,
    scim_filter: FilterQuery = None,
    start: Start = 1,
    count: Count = 100,
) -> JSONResponse:
    """Users, optionally filtered by `userName eq "…"` or `externalId eq "…"`."""
    authorize(caller, "identity.read")
    wanted = _filter(scim_filter, {"userName", "externalId"})
    with cp.store.session(read_only=True) as session:
        rows = [r for r in identity.list_principals(session) if r.kind == "user"]
        if wanted is not None:
            attribute = "username" if wanted[0] == "userName" else "external_id"
            rows = [r for r in rows if getattr(r, attribute) == wanted[1]]
        return _listing([_user_doc(session, r) for r in rows], start, count)


@router.post("/Users", status_code=status.HTTP_201_CREATED)
def create_user(
    body: ScimUser, request: Request, cp: ControlPlaneDep, caller: CallerDep
) -> JSONResponse:
    """Provision a user; it signs in through the IdP, so it has no password here."""
    authorize(caller, "identity.write")
    with cp.store.session() as session:
        row = identity.create_user(
            session,
            username=body.user_name,
            password=None,
            display_name=body.display_name or "",
            email=_email(body),
            source="scim",
            external_id=body.external_id,
            settings=_settings(request),
        )
        if not body.active:
            identity.deactivate(session, row.id)
        auditing.by_caller(session, caller, "users.create", f"principals/{row.id}", via="scim")
        return _scim(_user_doc(session, row), status.HTTP_201_CREATED)


@router.get("/Users/{user_id}")
def get_user(user_id: str, cp: ControlPlaneDep, caller: CallerDep) -> JSONResponse:
    """One user."""
    authorize(caller, "identity.read")
    with cp.store.session(read_only=True) as session:
        return _scim(_user_doc(session, identity.get_principal(session, user_id)))


def _set_active(session: Session, row: PrincipalRow, active: Any) -> None:
    wanted = active if isinstance(active, bool) else str(active).lower() == "true"
    if wanted and not row.active:
        identity.reactivate(session, row.id)
    elif not wanted and row.active:
        identity.deactivate(session, row.id)


def _apply_user(session: Session, row: PrincipalRow, path: str, value: Any) -> None:
    key = path.lower()
    if key == "active":
        _set_active(session, row, value)
    elif key == "displayname":
        row.display_name = str(value)[:200]
    elif key == "externalid":
        row.external_id = str(value)[:200]
    elif key == "emails" and isinstance(value, list):
        row.email = _email(ScimUser.model_validate({"userName": row.username, "emails": value}))
    elif key == "username":
        raise ValidationFailedError([Diagnostic("/userName", "cannot be changed")])


@router.patch("/Users/{user_id}")
def patch_user(
    user_id: str, body: PatchRequest, cp: ControlPlaneDep, caller: CallerDep
) -> JSONResponse:
    """Apply add/replace operations; `active: false` deactivates and revokes every token."""
    authorize(caller, "identity.write")
    with cp.store.session() as session:
        row = identity.get_principal(session, user_id)
        for operation in body.operations:
            if operation.op.lower() == "remove":
                continue  # nothing a SCIM client may remove from our users
            if operation.path is None and isinstance(operation.value, dict):
                for path, value in operation.value.items():
                    _apply_user(session, row, str(path), value)
            elif operation.path is not None:
                _apply_user(session, row, operation.path, operation.value)
        session.flush()
        session.refresh(row)
        auditing.by_caller(
            session, caller, "users.update", f"principals/{row.id}", active=row.active
        )
        return _scim(_user_doc(session, row))


@router.put("/Users/{user_id}")
def replace_user(
    user_id: str, body: ScimUser, cp: ControlPlaneDep, caller: CallerDep
) -> JSONResponse:
    """Replace a user's attributes (its userName stays)."""
    authorize(caller, "identity.write")
    with cp.store.session() as session:
        row = identity.get_principal(session, user_id)
        row.display_name = body.display_name or ""
        row.email = _email(body)
        row.external_id = body.external_id
        _set_active(session, row, body.active)
        session.flush()
        session.refresh(row)
        auditing.by_caller(
            session, caller, "users.update", f"principals/{row.id}", active=row.active
        )
        return _scim(_user_doc(session, row))


@router.delete("/Users/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_user(user_id: str, cp: ControlPlaneDep, caller: CallerDep) -> Response:
    """Deprovision a user: deactivated and out of every group; kept so the audit trail resolves."""
    authorize(caller, "identity.write")
    with cp.store.session() as session:
        row = identity.get_principal(session, user_id)
        identity.deactivate(session, row.id)
        for group in identity.groups_of(session, row.id):
            identity.remove_members(session, group.id, [row.id])
        auditing.by_caller(session, caller, "users.deactivate", f"principals/{row.id}", via="scim")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/Groups")
def list_groups(
    cp: ControlPlaneDep,
    caller: CallerDep,
    scim_filter: FilterQuery = None,
    start: Start = 1,
    count: Count = 100,
) -> JSONResponse:
    """Groups, optionally filtered by `displayName eq "…"`."""
    authorize(caller, "identity.read")
    wanted = _filter(scim_filter, {"displayName"})
    with cp.store.session(read_only=True) as session:
        rows = identity.list_groups(session, display_name=wanted[1] if wanted else None)
        return _listing([_group_doc(session, r) for r in rows], start, count)


@router.post("/Groups", status_code=status.HTTP_201_CREATED)
def create_group(body: ScimGroup, cp: ControlPlaneDep, caller: CallerDep) -> JSONResponse:
    """Provision a group with its members; role bindings name groups by displayName."""
    authorize(caller, "identity.write")
    with cp.store.session() as session:
        row = identity.create_group(session, body.display_name, external_id=body.external_id)
        identity.add_members(session, row.id, [m.value for m in body.members])
        auditing.by_caller(
            session, caller, "identity.create", f"groups/{row.id}", name=row.display_name
        )
        return _scim(_group_doc(session, row), status.HTTP_201_CREATED)


@router.get("/Groups/{group_id}")
def get_group(group_id: str, cp: ControlPlaneDep, caller: CallerDep) -> JSONResponse:
    """One group with its members."""
    authorize(caller, "identity.read")
    with cp.store.session(read_only=True) as session:
        return _scim(_group_doc(session, identity.get_group(session, group_id)))


def _member_ids(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [str(item["value"]) for item in items if isinstance(item, dict) and "value" in item]


def _apply_group(session: Session, group_id: str, operation: PatchOperation) -> None:
    op, path = operation.op.lower(), (operation.path or "")
    member = _MEMBER_PATH.match(path)
    if member is not None and op == "remove":
        identity.remove_members(session, group_id, [member.group(1)])
    elif path.lower() == "members":
        ids = _member_ids(operation.value)
        if op == "add":
            identity.add_members(session, group_id, ids)
        elif op == "remove":
            identity.remove_members(session, group_id, ids)
        else:
            identity.set_members(session, group_id, ids)
    elif path.lower() == "displayname" and op != "remove":
        identity.rename_group(session, group_id, str(operation.value))
    elif not path and isinstance(operation.value, dict):
        for key, value in operation.value.items():
            _apply_group(session, group_id, PatchOperation(op=op, path=str(key), value=value))
    else:
        raise ValidationFailedError([Diagnostic("/Operations", f"unsupported path {path!r}")])


@router.patch("/Groups/{group_id}")
def patch_group(
    group_id: str, body: PatchRequest, cp: ControlPlaneDep, caller: CallerDep
) -> JSONResponse:
    """Add or remove members, or rename the group."""
    authorize(caller, "identity.write")
    with cp.store.session() as session:
        row = identity.get_group(session, group_id)
        for operation in body.operations:
            _apply_group(session, group_id, operation)
        session.flush()
        session.refresh(row)
        auditing.by_caller(
            session, caller, "identity.update", f"groups/{row.id}", name=row.display_name
        )
        return _scim(_group_doc(session, row))


@router.delete("/Groups/{group_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_group(group_id: str, cp: ControlPlaneDep, caller: CallerDep) -> Response:
    """Delete a group; its role bindings stop granting anything to its former members."""
    authorize(caller, "identity.write")
    with cp.store.session() as session:
        identity.delete_group(session, group_id)
        auditing.by_caller(session, caller, "identity.delete", f"groups/{group_id}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
