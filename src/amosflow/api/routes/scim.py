"""/scim/v2: SCIM 2.0 provisioning of users and groups from the enterprise IdP (RFC 7643/7644).

Deactivating a user (``active: false``, or DELETE) revokes every session and API token it
holds in the same transaction (``services.scim``), so an IdP offboarding takes effect on the
next request. Errors use SCIM's own error schema, which is what IdP connectors parse.
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
from starlette.exceptions import HTTPException as StarletteHTTPException

from amosflow.api import _problems as problems
from amosflow.api._deps import ControlPlaneDep, IdentitySettingsDep
from amosflow.api._security import CallerDep
from amosflow.errors import AmosError, Diagnostic, ValidationFailedError
from amosflow.identity import authorize
from amosflow.services import scim as scim_service

SCIM_TYPE = "application/scim+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
_FILTER = re.compile(r'^\s*(\w+)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*$', re.IGNORECASE)


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


def _stamp(value: Any) -> str:
    return str(value.isoformat())


def _email(user: ScimUser) -> str | None:
    return scim_service.primary_email(user.emails)


def _user_doc(state: scim_service.UserState) -> dict[str, Any]:
    row = state.user
    doc: dict[str, Any] = {
        "schemas": [USER_SCHEMA],
        "id": row.id,
        "userName": row.username,
        "displayName": row.display_name,
        "active": row.active,
        "groups": [{"value": g.id, "display": g.display_name} for g in state.groups],
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


def _group_doc(state: scim_service.GroupState) -> dict[str, Any]:
    row = state.group
    doc: dict[str, Any] = {
        "schemas": [GROUP_SCHEMA],
        "id": row.id,
        "displayName": row.display_name,
        "members": [{"value": m.id, "display": m.username} for m in state.members],
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


def _operations(body: PatchRequest) -> list[scim_service.Operation]:
    return [scim_service.Operation(o.op, o.path, o.value) for o in body.operations]


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
    if wanted is None:
        users = scim_service.list_users(cp.store)
    else:
        attribute = "username" if wanted[0] == "userName" else "external_id"
        users = scim_service.list_users(cp.store, attribute=attribute, value=wanted[1])
    return _listing([_user_doc(u) for u in users], start, count)


@router.post("/Users", status_code=status.HTTP_201_CREATED)
def create_user(
    body: ScimUser, settings: IdentitySettingsDep, cp: ControlPlaneDep, caller: CallerDep
) -> JSONResponse:
    """Provision a user; it signs in through the IdP, so it has no password here."""
    authorize(caller, "identity.write")
    state = scim_service.create_user(
        cp.store,
        caller,
        user_name=body.user_name,
        display_name=body.display_name or "",
        email=_email(body),
        external_id=body.external_id,
        active=body.active,
        settings=settings,
    )
    return _scim(_user_doc(state), status.HTTP_201_CREATED)


@router.get("/Users/{user_id}")
def get_user(user_id: str, cp: ControlPlaneDep, caller: CallerDep) -> JSONResponse:
    """One user."""
    authorize(caller, "identity.read")
    return _scim(_user_doc(scim_service.get_user(cp.store, user_id)))


@router.patch("/Users/{user_id}")
def patch_user(
    user_id: str, body: PatchRequest, cp: ControlPlaneDep, caller: CallerDep
) -> JSONResponse:
    """Apply add/replace operations; `active: false` deactivates and revokes every token."""
    authorize(caller, "identity.write")
    state = scim_service.patch_user(cp.store, caller, user_id, _operations(body))
    return _scim(_user_doc(state))


@router.put("/Users/{user_id}")
def replace_user(
    user_id: str, body: ScimUser, cp: ControlPlaneDep, caller: CallerDep
) -> JSONResponse:
    """Replace a user's attributes (its userName stays)."""
    authorize(caller, "identity.write")
    state = scim_service.replace_user(
        cp.store,
        caller,
        user_id,
        display_name=body.display_name or "",
        email=_email(body),
        external_id=body.external_id,
        active=body.active,
    )
    return _scim(_user_doc(state))


@router.delete("/Users/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_user(user_id: str, cp: ControlPlaneDep, caller: CallerDep) -> Response:
    """Deprovision a user: deactivated and out of every group; kept so the audit trail resolves."""
    authorize(caller, "identity.write")
    scim_service.delete_user(cp.store, caller, user_id)
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
    groups = scim_service.list_groups(cp.store, display_name=wanted[1] if wanted else None)
    return _listing([_group_doc(g) for g in groups], start, count)


@router.post("/Groups", status_code=status.HTTP_201_CREATED)
def create_group(body: ScimGroup, cp: ControlPlaneDep, caller: CallerDep) -> JSONResponse:
    """Provision a group with its members; role bindings name groups by displayName."""
    authorize(caller, "identity.write")
    state = scim_service.create_group(
        cp.store,
        caller,
        display_name=body.display_name,
        external_id=body.external_id,
        member_ids=[m.value for m in body.members],
    )
    return _scim(_group_doc(state), status.HTTP_201_CREATED)


@router.get("/Groups/{group_id}")
def get_group(group_id: str, cp: ControlPlaneDep, caller: CallerDep) -> JSONResponse:
    """One group with its members."""
    authorize(caller, "identity.read")
    return _scim(_group_doc(scim_service.get_group(cp.store, group_id)))


@router.patch("/Groups/{group_id}")
def patch_group(
    group_id: str, body: PatchRequest, cp: ControlPlaneDep, caller: CallerDep
) -> JSONResponse:
    """Add or remove members, or rename the group."""
    authorize(caller, "identity.write")
    state = scim_service.patch_group(cp.store, caller, group_id, _operations(body))
    return _scim(_group_doc(state))


@router.delete("/Groups/{group_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_group(group_id: str, cp: ControlPlaneDep, caller: CallerDep) -> Response:
    """Delete a group; its role bindings stop granting anything to its former members."""
    authorize(caller, "identity.write")
    scim_service.delete_group(cp.store, caller, group_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
