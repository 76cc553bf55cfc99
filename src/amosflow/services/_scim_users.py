"""SCIM users: a principal, with its document kept beside it (decisions 0059, 0060).

Deactivating a user (``active: false``) or deleting it revokes every session and API token it
holds in the same transaction, so an IdP offboarding takes effect on the next request. A
deleted user keeps its principal, renamed out of the way, so the audit trail still resolves,
but SCIM answers 404 for it. Each change commits with its audit record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scim2_models import Email, GroupMembership, Meta, PatchOp, SearchRequest
from sqlalchemy import select

from amosflow import identity
from amosflow.errors import NotFoundError
from amosflow.services import _auditing as auditing
from amosflow.services import _scim_documents as docs
from amosflow.services._scim_models import POLICY, UserResource
from amosflow.store import PrincipalRow, ScimResourceRow
from amosflow.store._types import utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from amosflow.identity import IdentitySettings, Principal
    from amosflow.store import Store


def _live_user(session: Session, user_id: str) -> tuple[PrincipalRow, ScimResourceRow | None]:
    """A user SCIM may see: a ``user`` principal that was not deleted; 404 otherwise."""
    # Locked on PostgreSQL (SQLite's IMMEDIATE transactions already serialise writers), so
    # two concurrent PATCHes of one user apply one after the other, neither lost.
    row = session.get(PrincipalRow, user_id, with_for_update=True)
    scim = docs.scim_row(session, user_id)
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
        version=docs.etag(scim.version if scim is not None else 0),
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
    docs.save(session, row.id, "User", resource)


def users(session: Session) -> list[UserResource]:
    """Every user SCIM may see: ``user`` principals that were not deleted."""
    deleted = set(
        session.scalars(select(ScimResourceRow.id).where(ScimResourceRow.deleted_at.is_not(None)))
    )
    return [
        _user(session, row, docs.scim_row(session, row.id))
        for row in identity.list_principals(session)
        if row.kind == "user" and row.id not in deleted
    ]


def search_users(store: Store, search: SearchRequest[UserResource]) -> tuple[int, list[Any]]:
    """The users a query matches, sorted, and the page of them it asked for, with the total."""
    with store.session(read_only=True) as session:
        found = users(session)
    return docs.page(found, search)


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
        return _user(session, row, docs.scim_row(session, row.id))


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
    return _user(session, row, docs.scim_row(session, row.id))


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
        docs.check_version(scim, if_match)
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
        docs.check_version(scim, if_match)
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
        docs.check_version(scim, if_match)
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
