"""SCIM groups: a group and its members, with its document kept beside it (decision 0059).

Role bindings name a group by its ``displayName``, so a member gets the roles bound to it; a
renamed group's bindings change meaning. Each change commits with its audit record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scim2_models import Group, GroupMember, Meta, PatchOp, SearchRequest

from amosflow import identity
from amosflow.errors import Diagnostic, ValidationFailedError
from amosflow.services import _auditing as auditing
from amosflow.services import _scim_documents as docs
from amosflow.services._scim_models import POLICY
from amosflow.store import GroupRow
from amosflow.store._types import utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from amosflow.identity import Principal
    from amosflow.store import Store


def group(session: Session, row: GroupRow) -> Group:
    """A group as SCIM reads it: its document overlaid with the node's columns and members."""
    scim = docs.scim_row(session, row.id)
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
        version=docs.etag(scim.version if scim is not None else 0),
    )
    return resource


def _locked(session: Session, group_id: str) -> GroupRow:
    """The group, locked on PostgreSQL until the transaction ends.

    IdPs send membership changes of one group concurrently (Entra does); each PATCH reads the
    members, applies its operations and writes them back, so without the lock one change
    would overwrite another. SQLite's IMMEDIATE transactions already serialise writers.
    """
    session.get(GroupRow, group_id, with_for_update=True)
    return identity.get_group(session, group_id)


def _member_ids(session: Session, resource: Group) -> list[str]:
    """The principals a group's members name; one SCIM deleted, or unknown, is a 400."""
    ids = [str(m.value) for m in resource.members or [] if m.value]
    for index, member_id in enumerate(ids):
        kept = docs.scim_row(session, member_id)
        if kept is not None and kept.deleted_at is not None:
            raise ValidationFailedError(
                [Diagnostic(f"/members/{index}/value", f"no user {member_id!r}")]
            )
    return ids


def _write_group(session: Session, row: GroupRow, resource: Group) -> None:
    if resource.display_name and resource.display_name != row.display_name:
        identity.rename_group(session, row.id, resource.display_name)
    row.external_id = resource.external_id
    identity.set_members(session, row.id, _member_ids(session, resource))
    row.updated_at = utcnow()
    docs.save(session, row.id, "Group", resource)


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
        groups = [group(session, row) for row in identity.list_groups(session)]
    return docs.page(groups, search)


def get_group(store: Store, group_id: str) -> Group:
    """One group with its members; NotFoundError otherwise."""
    with store.session(read_only=True) as session:
        return group(session, identity.get_group(session, group_id))


def create_group(store: Store, caller: Principal, resource: Group) -> Group:
    """Provision a group with its members, audited; role bindings name groups by displayName."""
    with store.session() as session:
        row = identity.create_group(session, resource.display_name or "")
        _write_group(session, row, resource)
        _group_audit(session, caller, "groups.create", row)
        return group(session, row)


def replace_group(
    store: Store, caller: Principal, group_id: str, resource: Group, *, if_match: str | None = None
) -> Group:
    """Replace a group's whole document and members (PUT)."""
    with store.session() as session:
        row = _locked(session, group_id)
        docs.check_version(docs.scim_row(session, group_id), if_match)
        _write_group(session, row, resource)
        _group_audit(session, caller, "groups.update", row)
        return group(session, row)


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
        row = _locked(session, group_id)
        docs.check_version(docs.scim_row(session, group_id), if_match)
        resource = group(session, row)
        patch.patch(resource, scim_policy=POLICY)
        _write_group(session, row, resource)
        _group_audit(session, caller, "groups.update", row)
        return group(session, row)


def delete_group(
    store: Store, caller: Principal, group_id: str, *, if_match: str | None = None
) -> None:
    """Delete a group; its role bindings stop granting anything to its former members."""
    with store.session() as session:
        scim = docs.scim_row(session, group_id)
        _locked(session, group_id)
        docs.check_version(scim, if_match)
        identity.delete_group(session, group_id)
        if scim is not None:
            session.delete(scim)
        auditing.by_caller(session, caller, "groups.delete", f"groups/{group_id}", via="scim")
