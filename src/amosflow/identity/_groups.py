"""Groups of principals: provisioned by SCIM (or an administrator); roles bind to their names."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from amosflow.errors import ConflictError, Diagnostic, NotFoundError, ValidationFailedError
from amosflow.store import GroupMemberRow, GroupRow, PrincipalRow
from amosflow.store._types import utcnow

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.orm import Session


def get_group(session: Session, group_id: str) -> GroupRow:
    """One group; NotFoundError when there is none with this id."""
    row = session.get(GroupRow, group_id)
    if row is None:
        raise NotFoundError(f"group {group_id!r} not found")
    return row


def list_groups(session: Session, *, display_name: str | None = None) -> list[GroupRow]:
    """Groups by name, optionally only the one with ``display_name``."""
    query = select(GroupRow).order_by(GroupRow.display_name)
    if display_name is not None:
        query = query.where(GroupRow.display_name == display_name)
    return list(session.scalars(query))


def _check_name(session: Session, display_name: str, group_id: str | None = None) -> str:
    name = display_name.strip()
    if not name or len(name) > 200:  # noqa: PLR2004 - the column's length
        raise ValidationFailedError([Diagnostic("/displayName", "must be 1 to 200 characters")])
    clash = session.scalars(select(GroupRow).where(GroupRow.display_name == name)).first()
    if clash is not None and clash.id != group_id:
        raise ConflictError(f"a group named {name!r} exists already")
    return name


def create_group(
    session: Session, display_name: str, *, external_id: str | None = None
) -> GroupRow:
    """A new, empty group; ConflictError when the name is taken."""
    row = GroupRow(
        id=uuid.uuid4().hex,
        display_name=_check_name(session, display_name),
        external_id=external_id,
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    try:
        with session.begin_nested():  # a lost race for the name is a conflict, not a 500
            session.add(row)
    except IntegrityError as exc:
        raise ConflictError(f"a group named {row.display_name!r} exists already") from exc
    return row


def rename_group(session: Session, group_id: str, display_name: str) -> GroupRow:
    """Change a group's name (its role bindings follow the name, so they change meaning)."""
    row = get_group(session, group_id)
    row.display_name = _check_name(session, display_name, group_id)
    row.updated_at = utcnow()
    return row


def group_members(session: Session, group_id: str) -> list[PrincipalRow]:
    """The principals in a group, by username."""
    query = (
        select(PrincipalRow)
        .join(GroupMemberRow, GroupMemberRow.principal_id == PrincipalRow.id)
        .where(GroupMemberRow.group_id == group_id)
        .order_by(PrincipalRow.username)
    )
    return list(session.scalars(query))


def groups_of(session: Session, principal_id: str) -> list[GroupRow]:
    """The groups a principal is a member of."""
    query = (
        select(GroupRow)
        .join(GroupMemberRow, GroupMemberRow.group_id == GroupRow.id)
        .where(GroupMemberRow.principal_id == principal_id)
        .order_by(GroupRow.display_name)
    )
    return list(session.scalars(query))


def add_members(session: Session, group_id: str, principal_ids: Iterable[str]) -> None:
    """Add principals to a group; ones already in it stay once. Unknown ids are an error."""
    group = get_group(session, group_id)
    present = {m.id for m in group_members(session, group_id)}
    for index, principal_id in enumerate(principal_ids):
        if session.get(PrincipalRow, principal_id) is None:
            raise ValidationFailedError(
                [Diagnostic(f"/members/{index}/value", f"no user {principal_id!r}")]
            )
        if principal_id not in present:
            session.add(GroupMemberRow(group_id=group_id, principal_id=principal_id))
            present.add(principal_id)
    group.updated_at = utcnow()


def remove_members(session: Session, group_id: str, principal_ids: Iterable[str]) -> None:
    """Remove principals from a group; absent ones are ignored."""
    group = get_group(session, group_id)
    session.execute(
        delete(GroupMemberRow).where(
            GroupMemberRow.group_id == group_id,
            GroupMemberRow.principal_id.in_(list(principal_ids)),
        )
    )
    group.updated_at = utcnow()


def set_members(session: Session, group_id: str, principal_ids: Iterable[str]) -> None:
    """Make the group's members exactly ``principal_ids``."""
    wanted = list(dict.fromkeys(principal_ids))
    session.execute(delete(GroupMemberRow).where(GroupMemberRow.group_id == group_id))
    add_members(session, group_id, wanted)


def delete_group(session: Session, group_id: str) -> None:
    """Delete a group and its memberships."""
    row = get_group(session, group_id)
    session.execute(delete(GroupMemberRow).where(GroupMemberRow.group_id == group_id))
    session.delete(row)
