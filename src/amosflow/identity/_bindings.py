"""Role bindings: granting a role to a principal or a group in a folder, and reading them.

Every function takes the SQLAlchemy ``Session`` of one ``Store.session()``; the caller owns
the transaction. ``to_principal`` turns an account into the ``Principal`` that ``policy``
decides on, with the bindings it holds directly and through its groups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from sqlalchemy import and_, or_, select

from amosflow.dsl.expr import compile_template
from amosflow.errors import Diagnostic, ExpressionError, NotFoundError, ValidationFailedError
from amosflow.identity._clock import utc_now
from amosflow.identity._folders import folder_exists
from amosflow.identity._policy import ROLES
from amosflow.identity._principal import ALL_FOLDERS, Binding, Principal, Via
from amosflow.identity._users import get_principal
from amosflow.store import (
    BINDING_SUBJECTS,
    GroupMemberRow,
    GroupRow,
    PrincipalRow,
    RoleBindingRow,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.orm import Session

#: The names a binding's condition may use; ``policy`` evaluates it over exactly these.
CONDITION_NAMES = frozenset({"resource", "principal"})

SubjectKind = Literal["principal", "group"]


def _condition_problems(condition: str) -> list[Diagnostic]:
    """Why ``condition`` cannot be a binding's condition (empty when it can)."""
    if not condition:
        return [Diagnostic("/condition", "the condition is empty; leave it out instead")]
    try:
        template = compile_template("${" + condition + "}", "/condition")
    except ExpressionError as err:
        return [Diagnostic("/condition", err.reason)]
    problems: list[Diagnostic] = []
    if not template.is_single:
        problems.append(Diagnostic("/condition", "the condition must be one CEL expression"))
    unknown = sorted(template.names - CONDITION_NAMES)
    if unknown:
        problems.append(
            Diagnostic(
                "/condition",
                f"unknown name(s) {', '.join(unknown)}; a condition sees only "
                f"{', '.join(sorted(CONDITION_NAMES))}",
            )
        )
    return problems


def grant(
    session: Session,
    *,
    subject_kind: SubjectKind,
    subject: str,
    role: str,
    folder: str = ALL_FOLDERS,
    condition: str | None = None,
) -> RoleBindingRow:
    """Bind ``role`` to a principal (by id) or a group (by display name) in ``folder``.

    Granting the same binding twice returns the existing one. Raises ValidationFailedError
    for an unknown role or a condition that does not compile, NotFoundError for a principal
    or a folder that does not exist. A group need not exist yet: IdP groups arrive in tokens.
    """
    problems: list[Diagnostic] = []
    if subject_kind not in BINDING_SUBJECTS:
        problems.append(Diagnostic("/subject_kind", f"must be one of {BINDING_SUBJECTS}"))
    if not subject or len(subject) > 200:  # noqa: PLR2004 - the column's length
        problems.append(Diagnostic("/subject", "1 to 200 characters"))
    if role not in ROLES:
        problems.append(Diagnostic("/role", f"unknown role {role!r}; one of {', '.join(ROLES)}"))
    if condition is not None:
        condition = condition.strip()
        problems.extend(_condition_problems(condition))
    if problems:
        raise ValidationFailedError(problems)
    if subject_kind == "principal":
        get_principal(session, subject)
    if folder != ALL_FOLDERS and not folder_exists(session, folder):
        raise NotFoundError(f"folder {folder!r} not found")
    same_condition = (
        RoleBindingRow.condition.is_(None)
        if condition is None
        else RoleBindingRow.condition == condition
    )
    existing = session.scalars(
        select(RoleBindingRow).where(
            RoleBindingRow.subject_kind == subject_kind,
            RoleBindingRow.subject == subject,
            RoleBindingRow.role == role,
            RoleBindingRow.folder == folder,
            same_condition,
        )
    ).first()
    if existing is not None:
        return existing
    row = RoleBindingRow(
        subject_kind=subject_kind,
        subject=subject,
        role=role,
        folder=folder,
        condition=condition,
        created_at=utc_now(None),
    )
    session.add(row)
    session.flush()
    return row


def revoke_binding(session: Session, binding_id: int) -> None:
    """Delete one role binding; NotFoundError when there is none with this id."""
    row = session.get(RoleBindingRow, binding_id)
    if row is None:
        raise NotFoundError(f"role binding {binding_id} not found")
    session.delete(row)
    session.flush()


def list_bindings(
    session: Session, *, subject_kind: SubjectKind | None = None, subject: str | None = None
) -> list[RoleBindingRow]:
    """Role bindings, oldest first, optionally of one kind of subject or one subject."""
    query = select(RoleBindingRow).order_by(RoleBindingRow.id)
    if subject_kind is not None:
        query = query.where(RoleBindingRow.subject_kind == subject_kind)
    if subject is not None:
        query = query.where(RoleBindingRow.subject == subject)
    return list(session.scalars(query))


def group_names(session: Session, principal_id: str) -> list[str]:
    """The display names of the groups the store says ``principal_id`` is a member of."""
    query = (
        select(GroupRow.display_name)
        .join(GroupMemberRow, GroupMemberRow.group_id == GroupRow.id)
        .where(GroupMemberRow.principal_id == principal_id)
        .order_by(GroupRow.display_name)
    )
    return list(session.scalars(query))


def _bindings(session: Session, principal_id: str, groups: Iterable[str]) -> tuple[Binding, ...]:
    names = sorted(set(groups))
    subject = and_(
        RoleBindingRow.subject_kind == "principal", RoleBindingRow.subject == principal_id
    )
    if names:
        subject = or_(
            subject,
            and_(RoleBindingRow.subject_kind == "group", RoleBindingRow.subject.in_(names)),
        )
    rows = session.scalars(select(RoleBindingRow).where(subject).order_by(RoleBindingRow.id))
    # dict keeps the first occurrence: a role held both directly and through a group is one.
    unique = {Binding(row.role, row.folder, row.condition): None for row in rows}
    return tuple(unique)


def bindings_for(
    session: Session, principal_id: str, groups: Iterable[str] = ()
) -> tuple[Binding, ...]:
    """The effective bindings: the principal's own, its stored groups', and ``groups``'.

    ``groups`` are extra group names, such as the ``groups`` claim of an IdP token.
    """
    return _bindings(session, principal_id, [*group_names(session, principal_id), *groups])


def to_principal(
    session: Session,
    row: PrincipalRow,
    *,
    via: Via,
    groups: Iterable[str] = (),
    token_id: str | None = None,
    scopes: Iterable[str] | None = None,
) -> Principal:
    """The authenticated ``Principal`` of ``row`` with its effective bindings."""
    names = tuple(sorted({*group_names(session, row.id), *groups}))
    kind: Literal["user", "service"] = "service" if row.kind == "service" else "user"
    return Principal(
        id=row.id,
        kind=kind,
        username=row.username,
        source=row.source,
        bindings=_bindings(session, row.id, names),
        groups=names,
        via=via,
        token_id=token_id,
        scopes=frozenset(scopes) if scopes is not None else None,
    )
