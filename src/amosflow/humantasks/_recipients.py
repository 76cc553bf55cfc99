"""Whose mailbox a task reaches: its named users, its groups' members and its role holders."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import or_, select

from amosflow.store import GroupMemberRow, GroupRow, PrincipalRow, RoleBindingRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from amosflow.humantasks._inbox import TaskRecord


def _split(assignees: list[str]) -> dict[str, set[str]]:
    kinds: dict[str, set[str]] = {"user": set(), "role": set(), "group": set()}
    for assignee in assignees:
        kind, sep, name = assignee.partition(":")
        if sep and kind in kinds:
            kinds[kind].add(name)
        else:
            kinds["user"].add(assignee)
    return kinds


def assignee_emails(session: Session, task: TaskRecord) -> list[str]:
    """The email addresses of the active accounts the task is assigned to, sorted."""
    kinds = _split(task.assignees)
    groups = set(kinds["group"])
    ids: set[str] = set()
    if kinds["role"]:
        bindings = session.execute(
            select(RoleBindingRow.subject_kind, RoleBindingRow.subject).where(
                RoleBindingRow.role.in_(sorted(kinds["role"])),
                RoleBindingRow.folder.in_(["*", task.folder]),
            )
        )
        for subject_kind, subject in bindings:
            (ids if subject_kind == "principal" else groups).add(subject)
    if groups:
        members = session.scalars(
            select(GroupMemberRow.principal_id)
            .join(GroupRow, GroupRow.id == GroupMemberRow.group_id)
            .where(GroupRow.display_name.in_(sorted(groups)))
        )
        ids.update(members)
    query = select(PrincipalRow.email).where(
        PrincipalRow.active.is_(True),
        PrincipalRow.email.is_not(None),
        or_(PrincipalRow.username.in_(sorted(kinds["user"])), PrincipalRow.id.in_(sorted(ids))),
    )
    return sorted({str(email) for email in session.scalars(query) if email})
