"""SCIM provisioning of users and groups from the enterprise IdP: the state changes behind /scim/v2.

A resource is a ``scim2-models`` User (with the enterprise extension) or Group. What the rest
of the node reads (username, display name, email, external id, active, group members) lives
on the principal or group; the whole document lives beside it in ``scim_resources`` so every
attribute an IdP writes reads back (decision 0059).

Deactivating a user (``active: false``) or deleting it revokes every session and API token it
holds in the same transaction, so an IdP offboarding takes effect on the next request. A
deleted user keeps its principal, renamed out of the way, so the audit trail still resolves,
but SCIM answers 404 for it (decision 0060). Each change commits with its audit record, by
the identity of the IdP's token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scim2_models import (
    Email,
    Group,
    GroupMember,
    GroupMembership,
    Meta,
    PatchOp,
    PreconditionFailedException,
    SearchRequest,
)
from sqlalchemy import select

from amosflow import identity
from amosflow.errors import NotFoundError
from amosflow.services import _auditing as auditing
from amosflow.services._scim_models import (
    MAX_RESULTS,
    PATCH_POLICY,
    POLICY,
    UserResource,
    config,
    resource_types,
    schemas,
)
from amosflow.store import GroupRow, PrincipalRow, ScimResourceRow
from amosflow.store._types import utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from amosflow.identity import IdentitySettings, Principal
    from amosflow.store import Store

#: Attributes the node derives and never keeps in the stored document: its own id and meta,
#: a user's groups (held in the node's own tables), and a password (users sign in through
#: the IdP). A group's members are kept only for the ``display`` the IdP gave each; who is a
#: member is always read from the node's tables.
_DERIVED = ("id", "meta", "groups", "password")

__all__ = [
    "MAX_RESULTS",
    "PATCH_POLICY",
    "POLICY",
    "UserResource",
    "config",
    "create_group",
    "create_user",
    "delete_group",
    "delete_user",
    "etag",
    "get_group",
    "get_user",
    "patch_group",
    "patch_user",
    "replace_group",
    "replace_user",
    "resource_types",
    "schemas",
    "search_all",
    "search_groups",
    "search_users",
]


def etag(version: int) -> str:
    """The weak ETag of a resource version, as ``meta.version`` and the ETag header carry it."""
    return f'W/"{version}"'


def _check_version(row: ScimResourceRow | None, if_match: str | None) -> None:
    """Refuse a write whose If-Match names another version (RFC 7644 §3.14): 412."""
    if if_match is None or if_match.strip() == "*":
        return
    current = etag(row.version if row is not None else 0)
    wanted = {tag.strip() for tag in if_match.split(",")}
    if current not in wanted and current.removeprefix("W/") not in wanted:
        raise PreconditionFailedException(detail=f"the resource is at version {current}")


def _scim_row(session: Session, resource_id: str) -> ScimResourceRow | None:
    return session.get(ScimResourceRow, resource_id)


def _document(resource: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = resource.model_dump(mode="json", scim_policy=POLICY)
    return {key: value for key, value in dumped.items() if key not in _DERIVED}


def _save(session: Session, resource_id: str, kind: str, resource: Any) -> None:
    row = _scim_row(session, resource_id)
    if row is None:
        session.add(
            ScimResourceRow(
                id=resource_id, resource_type=kind, document=_document(resource), version=1
            )
        )
    else:
        row.document = _document(resource)
        row.version += 1
        row.deleted_at = None
    session.flush()


# -- users ------------------------------------------------------------------------------------


def _live_user(session: Session, user_id: str) -> tuple[PrincipalRow, ScimResourceRow | None]:
    """A user SCIM may see: a ``user`` principal that was not deleted; 404 otherwise."""
    row = session.get(PrincipalRow, user_id)
    scim = _scim_row(session, user_id)
    if row is None or row.kind != "user" or (scim is not None and scim.deleted_at is not None):
        raise NotFoundError(f"user {user_id!r} not found")
    return row, scim


def _user(session: Session, row: PrincipalRow, scim: ScimResourceRow | None) -> UserResource:
    if scim is not None:
        resource = UserResource.model_validate(scim.document, scim_policy=POLICY)
    else:  # provisioned before documents were kept, or created on the node itself
        resource = UserResource(display_name=row.display_name or None)
        if row.email:
            resource.emails = [Email(value=row.email, primary=True)]
    resource.id = row.id
    resource.user_name = row.username
    resource.external_id = row.external_id
    # ``active`` reads back as the principal's state once the IdP has written it. An IdP that
    # never wrote it, or removed it, reads it back absent (RFC 7644 §3.5.2.2), while the
    # principal keeps its state: a removal never switches a user back on, nor off.
    written = scim is None or "active" in scim.document
    resource.active = row.active if written else None
    groups = identity.groups_of(session, row.id)
    resource.groups = [GroupMembership(value=g.id, display=g.display_name) for g in groups] or None
    resource.meta = Meta(
        resource_type="User",
        created=row.created_at,
        last_modified=row.updated_at,
        version=etag(scim.version if scim is not None else 0),
    )
    return resource


def _primary_email(resource: UserResource) -> str | None:
    emails = resource.emails or []
    chosen = next((e for e in emails if e.primary), emails[0] if emails else None)
    return str(chosen.value) if chosen is not None and chosen.value else None


def _write_user(session: Session, row: PrincipalRow, resource: UserResource) -> None:
    """Carry what the node reads onto the principal, and keep the whole document beside it."""
    if resource.user_name and resource.user_name != row.username:
        identity.rename_user(session, row.id, resource.user_name)
    row.display_name = (resource.display_name or "")[:200]
    row.email = _primary_email(resource)
    row.external_id = resource.external_id
    if resource.active is False and row.active:
        identity.deactivate(session, row.id)
    elif resource.active is True and not row.active:
        identity.reactivate(session, row.id)
    row.updated_at = utcnow()
    _save(session, row.id, "User", resource)


def _users(session: Session) -> list[UserResource]:
    deleted = set(
        session.scalars(select(ScimResourceRow.id).where(ScimResourceRow.deleted_at.is_not(None)))
    )
    return [
        _user(session, row, _scim_row(session, row.id))
        for row in identity.list_principals(session)
        if row.kind == "user" and row.id not in deleted
    ]


def search_users(store: Store, search: SearchRequest[UserResource]) -> tuple[int, list[Any]]:
    """The users a query matches, sorted, and the page of them it asked for, with the total."""
    with store.session(read_only=True) as session:
        users = _users(session)
    return _page(users, search)


def search_all(store: Store, search: SearchRequest[Any]) -> tuple[int, list[Any]]:
    """Users and groups a query matches (POST /.search, RFC 7644 §3.4.3), sorted and paged.

    An attribute one resource type lacks evaluates to false for it, as §3.4.2.1 asks.
    """
    with store.session(read_only=True) as session:
        found: list[Any] = [*_users(session)]
        found.extend(_group(session, row) for row in identity.list_groups(session))
    return _page(found, search)


def _page(resources: list[Any], search: SearchRequest[Any]) -> tuple[int, list[Any]]:
    if search.filter is not None:
        resources = [r for r in resources if search.filter.match(r)]
    if search.sort_by is not None:
        resources = search.sort(resources)
    start = search.start_index_0 or 0
    count = min(search.count if search.count is not None else MAX_RESULTS, MAX_RESULTS)
    return len(resources), resources[start : start + count]


def get_user(store: Store, user_id: str) -> UserResource:
    """One user; NotFoundError when there is none, or it was deleted."""
    with store.session(read_only=True) as session:
        row, scim = _live_user(session, user_id)
        return _user(session, row, scim)


def create_user(
    store: Store, caller: Principal, resource: UserResource, *, settings: IdentitySettings
) -> UserResource:
    """Provision a user who signs in through the IdP (no password here), audited."""
    with store.session() as session:
        row = identity.create_user(
            session,
            username=resource.user_name or "",
            password=None,
            source="scim",
            settings=settings,
        )
        _write_user(session, row, resource)
        auditing.by_caller(
            session, caller, "users.create", f"principals/{row.id}", via="scim", active=row.active
        )
        return _user(session, row, _scim_row(session, row.id))


def _updated(session: Session, caller: Principal, row: PrincipalRow, how: str) -> UserResource:
    session.flush()
    auditing.by_caller(
        session,
        caller,
        "users.update",
        f"principals/{row.id}",
        via="scim",
        how=how,
        username=row.username,
        active=row.active,
    )
    return _user(session, row, _scim_row(session, row.id))


def replace_user(
    store: Store,
    caller: Principal,
    user_id: str,
    resource: UserResource,
    *,
    if_match: str | None = None,
) -> UserResource:
    """Replace a user's whole document (PUT); its userName may change."""
    with store.session() as session:
        row, scim = _live_user(session, user_id)
        _check_version(scim, if_match)
        _write_user(session, row, resource)
        return _updated(session, caller, row, "put")


def patch_user(
    store: Store,
    caller: Principal,
    user_id: str,
    patch: PatchOp[UserResource],
    *,
    if_match: str | None = None,
) -> UserResource:
    """Apply a PatchOp; a path that cannot be applied is refused, not dropped."""
    with store.session() as session:
        row, scim = _live_user(session, user_id)
        _check_version(scim, if_match)
        resource = _user(session, row, scim)
        patch.patch(resource, scim_policy=POLICY)
        _write_user(session, row, resource)
        return _updated(session, caller, row, "patch")


def delete_user(
    store: Store, caller: Principal, user_id: str, *, if_match: str | None = None
) -> None:
    """Deprovision a user: every token revoked, out of every group, 404 to SCIM from now on.

    The principal stays, deactivated and renamed out of the way so the IdP may provision the
    same userName again, because audit records name it.
    """
    with store.session() as session:
        row, scim = _live_user(session, user_id)
        _check_version(scim, if_match)
        former = row.username
        identity.deactivate(session, row.id)
        for group in identity.groups_of(session, row.id):
            identity.remove_members(session, group.id, [row.id])
        identity.rename_user(session, row.id, f"deleted.{row.id}")
        row.external_id = None
        if scim is None:
            scim = ScimResourceRow(id=row.id, resource_type="User", document={}, version=1)
            session.add(scim)
        scim.document = {}
        scim.deleted_at = utcnow()
        auditing.by_caller(
            session, caller, "users.delete", f"principals/{row.id}", via="scim", username=former
        )


# -- groups -----------------------------------------------------------------------------------


def _group(session: Session, row: GroupRow) -> Group:
    scim = _scim_row(session, row.id)
    resource = (
        Group.model_validate(scim.document, scim_policy=POLICY) if scim is not None else Group()
    )
    resource.id = row.id
    resource.display_name = row.display_name
    resource.external_id = row.external_id
    displays = {
        entry.get("value"): entry.get("display")
        for entry in (scim.document.get("members") or [] if scim is not None else [])
        if isinstance(entry, dict)
    }
    members = identity.group_members(session, row.id)
    resource.members = [
        GroupMember(value=m.id, display=displays.get(m.id) or m.username) for m in members
    ] or None
    resource.meta = Meta(
        resource_type="Group",
        created=row.created_at,
        last_modified=row.updated_at,
        version=etag(scim.version if scim is not None else 0),
    )
    return resource


def _write_group(session: Session, row: GroupRow, resource: Group) -> None:
    if resource.display_name and resource.display_name != row.display_name:
        identity.rename_group(session, row.id, resource.display_name)
    row.external_id = resource.external_id
    identity.set_members(session, row.id, [str(m.value) for m in resource.members or [] if m.value])
    row.updated_at = utcnow()
    _save(session, row.id, "Group", resource)


def _group_audit(session: Session, caller: Principal, action: str, row: GroupRow) -> None:
    members = [m.username for m in identity.group_members(session, row.id)]
    auditing.by_caller(
        session,
        caller,
        action,
        f"groups/{row.id}",
        via="scim",
        name=row.display_name,
        members=members,
    )


def search_groups(store: Store, search: SearchRequest[Group]) -> tuple[int, list[Any]]:
    """The groups a query matches, sorted, and the page of them it asked for, with the total."""
    with store.session(read_only=True) as session:
        groups = [_group(session, row) for row in identity.list_groups(session)]
    return _page(groups, search)


def get_group(store: Store, group_id: str) -> Group:
    """One group with its members; NotFoundError otherwise."""
    with store.session(read_only=True) as session:
        return _group(session, identity.get_group(session, group_id))


def create_group(store: Store, caller: Principal, resource: Group) -> Group:
    """Provision a group with its members, audited; role bindings name groups by displayName."""
    with store.session() as session:
        row = identity.create_group(session, resource.display_name or "")
        _write_group(session, row, resource)
        _group_audit(session, caller, "groups.create", row)
        return _group(session, row)


def replace_group(
    store: Store, caller: Principal, group_id: str, resource: Group, *, if_match: str | None = None
) -> Group:
    """Replace a group's whole document and members (PUT)."""
    with store.session() as session:
        row = identity.get_group(session, group_id)
        _check_version(_scim_row(session, group_id), if_match)
        _write_group(session, row, resource)
        _group_audit(session, caller, "groups.update", row)
        return _group(session, row)


def patch_group(
    store: Store,
    caller: Principal,
    group_id: str,
    patch: PatchOp[Group],
    *,
    if_match: str | None = None,
) -> Group:
    """Add or remove members, rename the group, or change any other attribute; audited."""
    with store.session() as session:
        row = identity.get_group(session, group_id)
        _check_version(_scim_row(session, group_id), if_match)
        resource = _group(session, row)
        patch.patch(resource, scim_policy=POLICY)
        _write_group(session, row, resource)
        _group_audit(session, caller, "groups.update", row)
        return _group(session, row)


def delete_group(
    store: Store, caller: Principal, group_id: str, *, if_match: str | None = None
) -> None:
    """Delete a group; its role bindings stop granting anything to its former members."""
    with store.session() as session:
        scim = _scim_row(session, group_id)
        identity.get_group(session, group_id)
        _check_version(scim, if_match)
        identity.delete_group(session, group_id)
        if scim is not None:
            session.delete(scim)
        auditing.by_caller(session, caller, "groups.delete", f"groups/{group_id}", via="scim")
