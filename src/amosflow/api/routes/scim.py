"""/scim/v2: SCIM 2.0 provisioning of users and groups from the enterprise IdP (RFC 7643/7644).

Resources, filters and PATCH are read with ``scim2-models`` (decision 0059); the state changes
are ``services.scim``'s. Deactivating a user (``active: false``) or deleting it revokes every
session and API token it holds in the same transaction. Every error of these routes is a SCIM
error document with the RFC's status and ``scimType`` (RFC 7644 §3.12), which is what IdP
connectors parse; the rest of the API keeps problem+json (decision 0061).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from scim2_models import (
    Context,
    Error,
    Group,
    NotFoundException,
    NotImplementedException,
    PatchOp,
    ResponseParameters,
    SCIMException,
    SearchRequest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from amosflow.api import _problems as problems
from amosflow.api._deps import ControlPlaneDep, IdentitySettingsDep
from amosflow.api._security import CallerDep
from amosflow.errors import AmosError, AuthenticationError, ConflictError, ValidationFailedError
from amosflow.identity import authorize
from amosflow.services import scim as scim_service

SCIM_TYPE = "application/scim+json"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
UserResource = scim_service.UserResource


class ScimResponse(JSONResponse):
    """A JSON answer labelled as SCIM (RFC 7644 §3.1)."""

    media_type = SCIM_TYPE


def _error(code: int, detail: str, scim_type: str | None = None) -> ScimResponse:
    body: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(code), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    response = ScimResponse(body, status_code=code)
    if code == status.HTTP_401_UNAUTHORIZED:
        response.headers["WWW-Authenticate"] = 'Bearer realm="amosflow"'
    return response


def _from_scim(error: Error) -> ScimResponse:
    return _error(error.status or 400, error.detail or "", error.scim_type)


def _from_amos(err: AmosError) -> ScimResponse:
    code, _ = problems.status_for(err)
    scim_type = None
    if isinstance(err, ValidationFailedError):
        code = status.HTTP_400_BAD_REQUEST  # RFC 7644 §3.12 has no 422; problem+json's own
        scim_type = "invalidValue"
        detail = "; ".join(f"{d.pointer}: {d.message}" for d in err.diagnostics) or str(err)
    else:
        detail = str(err).splitlines()[0] if str(err) else ""
    if isinstance(err, ConflictError):
        scim_type = "uniqueness"
    if isinstance(err, AuthenticationError):
        detail = "authentication required"
    return _error(code, detail[:2000], scim_type)


class ScimRoute(APIRoute):
    """Answers every error of a SCIM route in SCIM's error format (RFC 7644 §3.12)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the handler so errors become SCIM error documents."""
        handler = super().get_route_handler()

        async def scim_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as err:
                detail = "; ".join(
                    f"{'/'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
                    for e in err.errors()
                )
                return _error(400, detail[:2000], "invalidSyntax")
            except ValidationError as err:
                return _from_scim(Error.from_validation_errors(err)[0])
            except SCIMException as err:
                return _from_scim(err.to_error())
            except StarletteHTTPException as err:
                return _error(err.status_code, str(err.detail))
            except AmosError as err:
                return _from_amos(err)

        return scim_handler


def _scim_error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {SCIM_TYPE: {"schema": {"type": "object"}}}}


router = APIRouter(
    prefix="/scim/v2",
    tags=["scim"],
    route_class=ScimRoute,
    default_response_class=ScimResponse,
    responses={
        400: _scim_error("Bad request: invalidSyntax, invalidFilter, invalidPath, noTarget, …"),
        # The node's authentication answers before any route does, in problem+json.
        401: problems.documented("No valid credentials"),
        403: _scim_error("The caller may not provision identities"),
        404: _scim_error("Not found"),
        409: _scim_error("Conflict: uniqueness"),
        412: _scim_error("The If-Match version is not the resource's"),
        # FastAPI documents a 422 for every route with parameters; SCIM routes answer an
        # invalid request with 400 invalidSyntax instead, so the 422 is described as such.
        422: _scim_error("Not sent: an invalid request is a 400 invalidSyntax"),
        503: _scim_error("A dependency is unavailable"),
    },
)

ResourceBody = Annotated[dict[str, Any], Body(description="A SCIM resource (RFC 7643)")]
PatchBody = Annotated[dict[str, Any], Body(description="A PatchOp message (RFC 7644 §3.5.2)")]
IfMatch = Annotated[str | None, Header(alias="If-Match", max_length=200)]
FilterQuery = Annotated[str | None, Query(alias="filter", max_length=2000)]
SortByQuery = Annotated[str | None, Query(alias="sortBy", max_length=200)]
SortOrderQuery = Annotated[str | None, Query(alias="sortOrder", max_length=20)]
StartQuery = Annotated[int | None, Query(alias="startIndex")]
CountQuery = Annotated[int | None, Query()]
AttributesQuery = Annotated[str | None, Query(max_length=2000)]
ExcludedQuery = Annotated[str | None, Query(alias="excludedAttributes", max_length=2000)]


def _base(request: Request) -> str:
    return str(request.url_for("scim_service_provider_config")).removesuffix(
        "/ServiceProviderConfig"
    )


def _dump(
    resource: Any,
    request: Request,
    endpoint: str,
    ctx: Context,
    params: ResponseParameters[Any] | None = None,
) -> dict[str, Any]:
    base = _base(request)
    if resource.meta is not None:
        resource.meta.location = f"{base}/{endpoint}/{resource.id}"
    # References name where their target is, which only the request knows.
    for member in getattr(resource, "members", None) or []:
        member.ref, member.type = f"{base}/Users/{member.value}", "User"
    for membership in getattr(resource, "groups", None) or []:
        membership.ref, membership.type = f"{base}/Groups/{membership.value}", "direct"
    dumped: dict[str, Any] = resource.model_dump(
        scim_ctx=ctx, response_parameters=params, scim_policy=scim_service.POLICY
    )
    return dumped


def _one(
    resource: Any,
    request: Request,
    endpoint: str,
    ctx: Context,
    *,
    code: int = 200,
    params: ResponseParameters[Any] | None = None,
) -> ScimResponse:
    response = ScimResponse(_dump(resource, request, endpoint, ctx, params), status_code=code)
    if resource.meta is not None and resource.meta.version:
        response.headers["ETag"] = resource.meta.version
    if code == status.HTTP_201_CREATED and resource.meta is not None:
        response.headers["Location"] = str(resource.meta.location)
    return response


def _params(model: Any, attributes: str | None, excluded: str | None) -> ResponseParameters[Any]:
    return ResponseParameters[model].model_validate(
        {"attributes": attributes, "excludedAttributes": excluded},
        scim_policy=scim_service.POLICY,
    )


def _search(
    model: Any,
    *,
    scim_filter: str | None,
    sort_by: str | None,
    sort_order: str | None,
    start: int | None,
    count: int | None,
    attributes: str | None,
    excluded: str | None,
) -> SearchRequest[Any]:
    query: dict[str, Any] = {
        "filter": scim_filter,
        "sortBy": sort_by,
        "sortOrder": sort_order.lower() if sort_order else None,
        "startIndex": start,
        "count": None if count is None else max(0, min(count, scim_service.MAX_RESULTS)),
        "attributes": attributes,
        "excludedAttributes": excluded,
    }
    return SearchRequest[model].model_validate(
        {key: value for key, value in query.items() if value is not None},
        scim_policy=scim_service.POLICY,
    )


def _listing(
    request: Request, endpoint: str, search: SearchRequest[Any], found: tuple[int, list[Any]]
) -> ScimResponse:
    total, page = found
    resources = [_dump(r, request, endpoint, Context.SEARCH_RESPONSE, search) for r in page]
    return _list_body(resources, total, search)


def _list_body(
    resources: list[dict[str, Any]], total: int, search: SearchRequest[Any]
) -> ScimResponse:
    return ScimResponse(
        {
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "startIndex": (search.start_index_0 or 0) + 1,
            "itemsPerPage": len(resources),
            "Resources": resources,
        }
    )


# -- discovery (RFC 7644 §4) ------------------------------------------------------------------


@router.get("/ServiceProviderConfig", name="scim_service_provider_config")
def service_provider_config(caller: CallerDep) -> ScimResponse:
    """What this SCIM service supports: PATCH, filters, sorting and ETags; no bulk."""
    authorize(caller, "identity.read")
    return ScimResponse(scim_service.config())


def _discovery_list(request: Request, items: list[dict[str, Any]], kind: str) -> ScimResponse:
    for item in items:
        item.setdefault("meta", {"resourceType": kind})
        item["meta"]["location"] = f"{_base(request)}/{kind}s/{item['id']}"
    return ScimResponse(
        {
            "schemas": [LIST_SCHEMA],
            "totalResults": len(items),
            "startIndex": 1,
            "itemsPerPage": len(items),
            "Resources": items,
        }
    )


def _discovery_one(
    request: Request, items: list[dict[str, Any]], kind: str, key: str
) -> ScimResponse:
    for item in items:
        if item["id"] == key:
            item.setdefault("meta", {"resourceType": kind})
            item["meta"]["location"] = f"{_base(request)}/{kind}s/{key}"
            return ScimResponse(item)
    raise NotFoundException(detail=f"no {kind} {key!r}")


@router.get("/ResourceTypes")
def resource_types(request: Request, caller: CallerDep) -> ScimResponse:
    """The resource types served: User (with the enterprise extension) and Group."""
    authorize(caller, "identity.read")
    return _discovery_list(request, scim_service.resource_types(), "ResourceType")


@router.get("/ResourceTypes/{name}")
def resource_type(name: str, request: Request, caller: CallerDep) -> ScimResponse:
    """One resource type."""
    authorize(caller, "identity.read")
    return _discovery_one(request, scim_service.resource_types(), "ResourceType", name)


@router.get("/Schemas")
def schemas(request: Request, caller: CallerDep) -> ScimResponse:
    """The schemas of the resources served, with every attribute's characteristics."""
    authorize(caller, "identity.read")
    return _discovery_list(request, scim_service.schemas(), "Schema")


@router.get("/Schemas/{urn}")
def schema(urn: str, request: Request, caller: CallerDep) -> ScimResponse:
    """One schema, by its URN."""
    authorize(caller, "identity.read")
    return _discovery_one(request, scim_service.schemas(), "Schema", urn)


# Bulk is left out of the OpenAPI document: it is an operation the node does not offer (so
# /ServiceProviderConfig declares), not one a client should generate calls for.
@router.post("/Bulk", status_code=status.HTTP_501_NOT_IMPLEMENTED, include_in_schema=False)
def bulk(caller: CallerDep) -> ScimResponse:
    """Bulk operations are not supported (declared so in /ServiceProviderConfig)."""
    authorize(caller, "identity.write")
    raise NotImplementedException(detail="bulk operations are not supported")


# -- users ------------------------------------------------------------------------------------


@router.get("/Users")
def list_users(
    *,
    request: Request,
    cp: ControlPlaneDep,
    caller: CallerDep,
    scim_filter: FilterQuery = None,
    sort_by: SortByQuery = None,
    sort_order: SortOrderQuery = None,
    start: StartQuery = None,
    count: CountQuery = None,
    attributes: AttributesQuery = None,
    excluded: ExcludedQuery = None,
) -> ScimResponse:
    """Users matching a filter (the whole RFC 7644 grammar), sorted and paged."""
    authorize(caller, "identity.read")
    search = _search(
        UserResource,
        scim_filter=scim_filter,
        sort_by=sort_by,
        sort_order=sort_order,
        start=start,
        count=count,
        attributes=attributes,
        excluded=excluded,
    )
    return _listing(request, "Users", search, scim_service.search_users(cp.store, search))


SearchBody = Annotated[dict[str, Any], Body(description="A SearchRequest (RFC 7644 §3.4.3)")]


def _search_body(model: Any, body: dict[str, Any]) -> SearchRequest[Any]:
    return SearchRequest[model].model_validate(
        body, scim_ctx=Context.SEARCH_REQUEST, scim_policy=scim_service.POLICY
    )


@router.post("/.search")
def search_everything(
    body: SearchBody, request: Request, cp: ControlPlaneDep, caller: CallerDep
) -> ScimResponse:
    """Users and Groups at once, the query in the body (RFC 7644 §3.4.3)."""
    authorize(caller, "identity.read")
    search = _search_body(UserResource | Group, body)
    total, page = scim_service.search_all(cp.store, search)
    resources = [
        _dump(
            r,
            request,
            "Groups" if isinstance(r, Group) else "Users",
            Context.SEARCH_RESPONSE,
            search,
        )
        for r in page
    ]
    return _list_body(resources, total, search)


@router.post("/Users/.search")
def search_users(
    body: SearchBody, request: Request, cp: ControlPlaneDep, caller: CallerDep
) -> ScimResponse:
    """The same query as GET /Users, its parameters in the body (RFC 7644 §3.4.3)."""
    authorize(caller, "identity.read")
    search = _search_body(UserResource, body)
    return _listing(request, "Users", search, scim_service.search_users(cp.store, search))


@router.post("/Users", status_code=status.HTTP_201_CREATED)
def create_user(
    body: ResourceBody,
    request: Request,
    settings: IdentitySettingsDep,
    cp: ControlPlaneDep,
    caller: CallerDep,
) -> ScimResponse:
    """Provision a user; it signs in through the IdP, so it has no password here."""
    authorize(caller, "identity.write")
    resource = UserResource.model_validate(
        body, scim_ctx=Context.RESOURCE_CREATION_REQUEST, scim_policy=scim_service.POLICY
    )
    created = scim_service.create_user(cp.store, caller, resource, settings=settings)
    return _one(created, request, "Users", Context.RESOURCE_CREATION_RESPONSE, code=201)


@router.get("/Users/{user_id}")
def get_user(
    *,
    user_id: str,
    request: Request,
    cp: ControlPlaneDep,
    caller: CallerDep,
    attributes: AttributesQuery = None,
    excluded: ExcludedQuery = None,
) -> ScimResponse:
    """One user."""
    authorize(caller, "identity.read")
    params = _params(UserResource, attributes, excluded)
    user = scim_service.get_user(cp.store, user_id)
    return _one(user, request, "Users", Context.RESOURCE_QUERY_RESPONSE, params=params)


@router.put("/Users/{user_id}")
def replace_user(
    *,
    user_id: str,
    body: ResourceBody,
    request: Request,
    cp: ControlPlaneDep,
    caller: CallerDep,
    if_match: IfMatch = None,
) -> ScimResponse:
    """Replace a user's whole document; its userName may change."""
    authorize(caller, "identity.write")
    resource = UserResource.model_validate(
        body, scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST, scim_policy=scim_service.POLICY
    )
    user = scim_service.replace_user(cp.store, caller, user_id, resource, if_match=if_match)
    return _one(user, request, "Users", Context.RESOURCE_REPLACEMENT_RESPONSE)


_MANAGER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:manager"


def _entra_manager(body: dict[str, Any]) -> dict[str, Any]:
    """Entra ID's PATCH with the enterprise ``manager`` wrapped as RFC 7643 §4.3 wants it.

    Entra sets ``manager`` to the manager's bare id, where the RFC has a complex attribute
    whose ``value`` is that id; wrapped, the change lands instead of being refused.
    """
    operations = body.get("Operations")
    if not isinstance(operations, list):
        return body
    fixed = [
        {**o, "value": {"value": o["value"]}}
        if isinstance(o, dict)
        and str(o.get("path", "")).lower() == _MANAGER
        and isinstance(o.get("value"), str)
        else o
        for o in operations
    ]
    return {**body, "Operations": fixed}


@router.patch("/Users/{user_id}")
def patch_user(
    *,
    user_id: str,
    body: PatchBody,
    request: Request,
    cp: ControlPlaneDep,
    caller: CallerDep,
    if_match: IfMatch = None,
) -> ScimResponse:
    """Apply add/replace/remove operations; `active: false` deactivates and revokes every token."""
    authorize(caller, "identity.write")
    patch = PatchOp[UserResource].model_validate(
        _entra_manager(body),
        scim_ctx=Context.RESOURCE_PATCH_REQUEST,
        scim_policy=scim_service.PATCH_POLICY,
    )
    user = scim_service.patch_user(cp.store, caller, user_id, patch, if_match=if_match)
    return _one(user, request, "Users", Context.RESOURCE_PATCH_RESPONSE)


@router.delete("/Users/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_user(
    user_id: str, cp: ControlPlaneDep, caller: CallerDep, if_match: IfMatch = None
) -> Response:
    """Deprovision a user: every token revoked, out of every group, and 404 from now on."""
    authorize(caller, "identity.write")
    scim_service.delete_user(cp.store, caller, user_id, if_match=if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- groups -----------------------------------------------------------------------------------


@router.get("/Groups")
def list_groups(
    *,
    request: Request,
    cp: ControlPlaneDep,
    caller: CallerDep,
    scim_filter: FilterQuery = None,
    sort_by: SortByQuery = None,
    sort_order: SortOrderQuery = None,
    start: StartQuery = None,
    count: CountQuery = None,
    attributes: AttributesQuery = None,
    excluded: ExcludedQuery = None,
) -> ScimResponse:
    """Groups matching a filter, sorted and paged; `excludedAttributes=members` is honoured."""
    authorize(caller, "identity.read")
    search = _search(
        Group,
        scim_filter=scim_filter,
        sort_by=sort_by,
        sort_order=sort_order,
        start=start,
        count=count,
        attributes=attributes,
        excluded=excluded,
    )
    return _listing(request, "Groups", search, scim_service.search_groups(cp.store, search))


@router.post("/Groups/.search")
def search_groups(
    body: SearchBody, request: Request, cp: ControlPlaneDep, caller: CallerDep
) -> ScimResponse:
    """The same query as GET /Groups, its parameters in the body (RFC 7644 §3.4.3)."""
    authorize(caller, "identity.read")
    search = _search_body(Group, body)
    return _listing(request, "Groups", search, scim_service.search_groups(cp.store, search))


@router.post("/Groups", status_code=status.HTTP_201_CREATED)
def create_group(
    body: ResourceBody, request: Request, cp: ControlPlaneDep, caller: CallerDep
) -> ScimResponse:
    """Provision a group with its members; role bindings name groups by displayName."""
    authorize(caller, "identity.write")
    resource = Group.model_validate(
        body, scim_ctx=Context.RESOURCE_CREATION_REQUEST, scim_policy=scim_service.POLICY
    )
    created = scim_service.create_group(cp.store, caller, resource)
    return _one(created, request, "Groups", Context.RESOURCE_CREATION_RESPONSE, code=201)


@router.get("/Groups/{group_id}")
def get_group(
    *,
    group_id: str,
    request: Request,
    cp: ControlPlaneDep,
    caller: CallerDep,
    attributes: AttributesQuery = None,
    excluded: ExcludedQuery = None,
) -> ScimResponse:
    """One group with its members."""
    authorize(caller, "identity.read")
    params = _params(Group, attributes, excluded)
    group = scim_service.get_group(cp.store, group_id)
    return _one(group, request, "Groups", Context.RESOURCE_QUERY_RESPONSE, params=params)


@router.put("/Groups/{group_id}")
def replace_group(
    *,
    group_id: str,
    body: ResourceBody,
    request: Request,
    cp: ControlPlaneDep,
    caller: CallerDep,
    if_match: IfMatch = None,
) -> ScimResponse:
    """Replace a group's whole document and its members."""
    authorize(caller, "identity.write")
    resource = Group.model_validate(
        body, scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST, scim_policy=scim_service.POLICY
    )
    group = scim_service.replace_group(cp.store, caller, group_id, resource, if_match=if_match)
    return _one(group, request, "Groups", Context.RESOURCE_REPLACEMENT_RESPONSE)


@router.patch("/Groups/{group_id}")
def patch_group(
    *,
    group_id: str,
    body: PatchBody,
    request: Request,
    cp: ControlPlaneDep,
    caller: CallerDep,
    if_match: IfMatch = None,
) -> ScimResponse:
    """Add or remove members, rename the group, or change any other attribute."""
    authorize(caller, "identity.write")
    patch = PatchOp[Group].model_validate(
        body, scim_ctx=Context.RESOURCE_PATCH_REQUEST, scim_policy=scim_service.PATCH_POLICY
    )
    group = scim_service.patch_group(cp.store, caller, group_id, patch, if_match=if_match)
    return _one(group, request, "Groups", Context.RESOURCE_PATCH_RESPONSE)


@router.delete("/Groups/{group_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_group(
    group_id: str, cp: ControlPlaneDep, caller: CallerDep, if_match: IfMatch = None
) -> Response:
    """Delete a group; its role bindings stop granting anything to its former members."""
    authorize(caller, "identity.write")
    scim_service.delete_group(cp.store, caller, group_id, if_match=if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# Declared last, so it only answers what no route above does: a SCIM 404, not problem+json.
@router.api_route(
    "/{unknown:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
def unknown_endpoint(unknown: str, request: Request) -> ScimResponse:
    """No such SCIM endpoint (404), or not with this method (405)."""
    for route in router.routes:
        if (
            getattr(route, "name", "") != "unknown_endpoint"
            and route.matches(request.scope)[0] is Match.PARTIAL
        ):
            return _error(status.HTTP_405_METHOD_NOT_ALLOWED, f"{request.method} is not allowed")
    raise NotFoundException(detail=f"no SCIM endpoint /{unknown[:200]}")
