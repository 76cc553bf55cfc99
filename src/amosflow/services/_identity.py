"""Administering who may do what: users, service accounts, role bindings and folders.

Each change commits with its audit record (`users.create`, `bindings.create`, ...) in one
transaction, so no change stays without its record. The caller is authorized for
``identity.*`` or ``folders.*`` before it gets here; granting a role needs more, checked here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amosflow import identity
from amosflow.errors import PermissionDeniedError
from amosflow.identity import ALL_FOLDERS, ROLE_PERMISSIONS, folder_scope, holds_unconditionally
from amosflow.services import _auditing as auditing

if TYPE_CHECKING:
    from amosflow.identity import IdentitySettings, Principal, SubjectKind
    from amosflow.store import FolderRow, PrincipalRow, RoleBindingRow, Store


def list_principals(store: Store) -> list[PrincipalRow]:
    """Every user and service account, by username."""
    with store.session(read_only=True) as session:
        return identity.list_principals(session)


def get_principal(store: Store, principal_id: str) -> PrincipalRow:
    """One user or service account; NotFoundError otherwise."""
    with store.session(read_only=True) as session:
        return identity.get_principal(session, principal_id)


def create_user(
    store: Store,
    caller: Principal,
    *,
    username: str,
    password: str,
    display_name: str,
    email: str | None,
    settings: IdentitySettings,
) -> PrincipalRow:
    """Create a local user with a password, audited as `users.create`."""
    with store.session() as session:
        row = identity.create_user(
            session,
            username=username,
            password=password,
            display_name=display_name,
            email=email,
            settings=settings,
        )
        auditing.by_caller(session, caller, "users.create", f"principals/{row.id}", via="api")
        return row


def deactivate(store: Store, caller: Principal, principal_id: str) -> PrincipalRow:
    """Deactivate an account and kill every credential it holds, audited."""
    with store.session() as session:
        row = identity.deactivate(session, principal_id)
        auditing.by_caller(session, caller, "users.deactivate", f"principals/{row.id}")
        return row


def activate(store: Store, caller: Principal, principal_id: str) -> PrincipalRow:
    """Reactivate an account (its old tokens stay dead), audited."""
    with store.session() as session:
        row = identity.reactivate(session, principal_id)
        auditing.by_caller(session, caller, "users.activate", f"principals/{row.id}")
        return row


def create_service_account(
    store: Store, caller: Principal, *, name: str, settings: IdentitySettings
) -> tuple[PrincipalRow, str]:
    """Create a service account; returns it and its client secret, shown only now."""
    with store.session() as session:
        row, secret = identity.create_service_account(session, name=name, settings=settings)
        auditing.by_caller(session, caller, "users.create", f"principals/{row.id}", kind="service")
        return row, secret


def list_bindings(store: Store) -> list[RoleBindingRow]:
    """Every role binding, oldest first."""
    with store.session(read_only=True) as session:
        return identity.list_bindings(session)


def create_binding(
    store: Store,
    caller: Principal,
    *,
    subject_kind: SubjectKind,
    subject: str,
    role: str,
    folder: str,
    condition: str | None,
) -> RoleBindingRow:
    """Grant a role; granting the same binding twice answers the existing one.

    Nobody grants more than they hold outright: the caller must hold every permission of the
    role in the binding's folder (or everywhere, for ``*``) through bindings without a
    condition, so a conditional administrator cannot make itself an unconditional one.
    """
    role_permissions = ROLE_PERMISSIONS.get(role)
    if role_permissions is not None and not holds_unconditionally(caller, role_permissions, folder):
        where = "every folder" if folder == ALL_FOLDERS else f"folder {folder!r}"
        raise PermissionDeniedError(
            f"{caller.actor} may not grant {role!r} in {where}: it does not hold all of"
            " that role's permissions there without a condition"
        )
    with store.session() as session:
        row = identity.grant(
            session,
            subject_kind=subject_kind,
            subject=subject,
            role=role,
            folder=folder,
            condition=condition,
        )
        auditing.by_caller(
            session,
            caller,
            "bindings.create",
            f"role-bindings/{row.id}",
            subject=f"{row.subject_kind}:{row.subject}",
            role=row.role,
            folder=row.folder,
            condition=row.condition,
        )
        return row


def delete_binding(store: Store, caller: Principal, binding_id: int) -> None:
    """Revoke a role binding, audited as `bindings.delete`."""
    with store.session() as session:
        identity.revoke_binding(session, binding_id)
        auditing.by_caller(session, caller, "bindings.delete", f"role-bindings/{binding_id}")


def visible_folders(store: Store, caller: Principal) -> list[FolderRow]:
    """The folders ``caller`` can see, by name."""
    scope = folder_scope(caller, "folders.read")
    with store.session(read_only=True) as session:
        return [row for row in identity.list_folders(session) if row.name in scope]


def create_folder(store: Store, caller: Principal, *, name: str, description: str) -> FolderRow:
    """Create a folder, audited as `folders.create`."""
    with store.session() as session:
        row = identity.create_folder(session, name, description)
        auditing.by_caller(session, caller, "folders.create", f"folders/{row.name}")
        return row
