"""SCIM provisioning of users and groups from the enterprise IdP: the state changes behind /scim/v2.

Deactivating a user (``active: false``, or deprovisioning it) revokes every session and API
token it holds in the same transaction, so an IdP offboarding takes effect on the next
request. Each change commits with its audit record. What comes back is the user or group
with what its SCIM document shows (groups, members), read in the same transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import StringConstraints, TypeAdapter

from amosflow import identity
from amosflow.errors import Diagnostic, ValidationFailedError
from amosflow.services import _auditing as auditing

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.orm import Session

    from amosflow.identity import IdentitySettings, Principal
    from amosflow.store import GroupRow, PrincipalRow, Store

_MEMBER_PATH = re.compile(r'^members\[value\s+eq\s+"([^"]+)"\]$', re.IGNORECASE)
# The bounds the request models put on what a client sends, for values nested in a PATCH.
_EMAILS = TypeAdapter(list[dict[str, Any]])
_PATH = TypeAdapter(Annotated[str, StringConstraints(max_length=200)])


@dataclass(frozen=True)
class Operation:
    """One PATCH operation: ``op`` is add, remove or replace (any case)."""

    op: str
    path: str | None = None
    value: Any = None


@dataclass(frozen=True)
class UserState:
    """A provisioned user and the groups it is a member of."""

    user: PrincipalRow
    groups: list[GroupRow]


@dataclass(frozen=True)
class GroupState:
    """A group and its members."""

    group: GroupRow
    members: list[PrincipalRow]


def primary_email(emails: list[dict[str, Any]]) -> str | None:
    """The address of the primary entry of SCIM ``emails``, else of the first one."""
    for entry in emails:
        if entry.get("primary") and isinstance(entry.get("value"), str):
            return str(entry["value"])
    first = emails[0].get("value") if emails else None
    return first if isinstance(first, str) else None


def _user(session: Session, row: PrincipalRow) -> UserState:
    return UserState(row, identity.groups_of(session, row.id))


def _group(session: Session, row: GroupRow) -> GroupState:
    return GroupState(row, identity.group_members(session, row.id))


def list_users(store: Store, *, attribute: str | None = None, value: str = "") -> list[UserState]:
    """Users (not service accounts), optionally those whose ``attribute`` equals ``value``.

    ``attribute`` is ``username`` or ``external_id``.
    """
    with store.session(read_only=True) as session:
        rows = [r for r in identity.list_principals(session) if r.kind == "user"]
        if attribute is not None:
            rows = [r for r in rows if getattr(r, attribute) == value]
        return [_user(session, r) for r in rows]


def get_user(store: Store, user_id: str) -> UserState:
    """One principal with its groups; NotFoundError otherwise."""
    with store.session(read_only=True) as session:
        return _user(session, identity.get_principal(session, user_id))


def create_user(
    store: Store,
    caller: Principal,
    *,
    user_name: str,
    display_name: str,
    email: str | None,
    external_id: str | None,
    active: bool,
    settings: IdentitySettings,
) -> UserState:
    """Provision a user who signs in through the IdP (no password here), audited."""
    with store.session() as session:
        row = identity.create_user(
            session,
            username=user_name,
            password=None,
            display_name=display_name,
            email=email,
            source="scim",
            external_id=external_id,
            settings=settings,
        )
        if not active:
            identity.deactivate(session, row.id)
        auditing.by_caller(session, caller, "users.create", f"principals/{row.id}", via="scim")
        return _user(session, row)


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
        row.email = primary_email(_EMAILS.validate_python(value))
    elif key == "username":
        raise ValidationFailedError([Diagnostic("/userName", "cannot be changed")])


def _updated(session: Session, caller: Principal, row: PrincipalRow) -> UserState:
    session.flush()
    session.refresh(row)
    auditing.by_caller(session, caller, "users.update", f"principals/{row.id}", active=row.active)
    return _user(session, row)


def patch_user(
    store: Store, caller: Principal, user_id: str, operations: Iterable[Operation]
) -> UserState:
    """Apply add/replace operations; `active: false` deactivates and revokes every token."""
    with store.session() as session:
        row = identity.get_principal(session, user_id)
        for operation in operations:
            if operation.op.lower() == "remove":
                continue  # nothing a SCIM client may remove from our users
            if operation.path is None and isinstance(operation.value, dict):
                for path, value in operation.value.items():
                    _apply_user(session, row, str(path), value)
            elif operation.path is not None:
                _apply_user(session, row, operation.path, operation.value)
        return _updated(session, caller, row)


def replace_user(
    store: Store,
    caller: Principal,
    user_id: str,
    *,
    display_name: str,
    email: str | None,
    external_id: str | None,
    active: bool,
) -> UserState:
    """Replace a user's attributes (its userName stays)."""
    with store.session() as session:
        row = identity.get_principal(session, user_id)
        row.display_name = display_name
        row.email = email
        row.external_id = external_id
        _set_active(session, row, active)
        return _updated(session, caller, row)


def delete_user(store: Store, caller: Principal, user_id: str) -> None:
    """Deprovision a user: deactivated and out of every group; kept so the audit trail resolves."""
    with store.session() as session:
        row = identity.get_principal(session, user_id)
        identity.deactivate(session, row.id)
        for group in identity.groups_of(session, row.id):
            identity.remove_members(session, group.id, [row.id])
        auditing.by_caller(session, caller, "users.deactivate", f"principals/{row.id}", via="scim")


def list_groups(store: Store, *, display_name: str | None = None) -> list[GroupState]:
    """Groups with their members, optionally only the one called ``display_name``."""
    with store.session(read_only=True) as session:
        rows = identity.list_groups(session, display_name=display_name)
        return [_group(session, r) for r in rows]


def get_group(store: Store, group_id: str) -> GroupState:
    """One group with its members; NotFoundError otherwise."""
    with store.session(read_only=True) as session:
        return _group(session, identity.get_group(session, group_id))


def create_group(
    store: Store,
    caller: Principal,
    *,
    display_name: str,
    external_id: str | None,
    member_ids: list[str],
) -> GroupState:
    """Provision a group with its members, audited; role bindings name groups by displayName."""
    with store.session() as session:
        row = identity.create_group(session, display_name, external_id=external_id)
        identity.add_members(session, row.id, member_ids)
        auditing.by_caller(
            session, caller, "groups.create", f"groups/{row.id}", name=row.display_name
        )
        return _group(session, row)


def _member_ids(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [str(item["value"]) for item in items if isinstance(item, dict) and "value" in item]


def _apply_group(session: Session, group_id: str, operation: Operation) -> None:
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
            nested = Operation(op=op, path=_PATH.validate_python(str(key)), value=value)
            _apply_group(session, group_id, nested)
    else:
        raise ValidationFailedError([Diagnostic("/Operations", f"unsupported path {path!r}")])


def patch_group(
    store: Store, caller: Principal, group_id: str, operations: Iterable[Operation]
) -> GroupState:
    """Add or remove members, or rename the group, audited as `groups.update`."""
    with store.session() as session:
        row = identity.get_group(session, group_id)
        for operation in operations:
            _apply_group(session, group_id, operation)
        session.flush()
        session.refresh(row)
        auditing.by_caller(
            session, caller, "groups.update", f"groups/{row.id}", name=row.display_name
        )
        return _group(session, row)


def delete_group(store: Store, caller: Principal, group_id: str) -> None:
    """Delete a group; its role bindings stop granting anything to its former members."""
    with store.session() as session:
        identity.delete_group(session, group_id)
        auditing.by_caller(session, caller, "groups.delete", f"groups/{group_id}")
