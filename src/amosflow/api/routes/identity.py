"""/api/v1/users, /role-bindings, /folders, /service-accounts: administering who may do what.

Identity is not folder-scoped: only a binding on every folder (``*``) gives ``identity.*``,
so a folder administrator cannot grant itself more than its folder.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from amosflow.api import _problems as problems
from amosflow.api._deps import ControlPlaneDep, IdentitySettingsDep
from amosflow.api._security import CallerDep
from amosflow.identity import ALL_FOLDERS, authorize
from amosflow.services import identity as identity_service

router = APIRouter(prefix="/api/v1", tags=["identity"], responses=problems.RESPONSES)


class UserCreate(BaseModel):
    """A local user to create."""

    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)
    display_name: str = Field(default="", max_length=200)
    email: str | None = Field(default=None, max_length=320)


class PrincipalPublic(BaseModel):
    """A user or service account, without any secret."""

    id: str
    kind: str
    username: str
    display_name: str
    email: str | None
    source: str
    active: bool
    locked_until: datetime | None
    created_at: datetime


class BindingCreate(BaseModel):
    """A role for a principal (by id) or a group (by name) in a folder, maybe with a condition."""

    model_config = ConfigDict(extra="forbid")
    subject_kind: Literal["principal", "group"]
    subject: str = Field(min_length=1, max_length=200)
    role: str = Field(min_length=1, max_length=32)
    folder: str = Field(default=ALL_FOLDERS, max_length=200)
    condition: str | None = Field(
        default=None, max_length=2000, description="CEL over `resource` and `principal`."
    )


class BindingPublic(BaseModel):
    """A role binding."""

    id: int
    subject_kind: str
    subject: str
    role: str
    folder: str
    condition: str | None
    created_at: datetime


class FolderCreate(BaseModel):
    """A folder to create."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=500)


class FolderPublic(BaseModel):
    """A folder."""

    name: str
    description: str
    created_at: datetime


class ServiceAccountCreate(BaseModel):
    """A service account to create."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)


class ServiceAccountIssued(PrincipalPublic):
    """A new service account: the only answer that carries its client secret."""

    client_id: str
    client_secret: str


def _public(row: object) -> PrincipalPublic:
    return PrincipalPublic.model_validate(row, from_attributes=True)


@router.get("/users", response_model=list[PrincipalPublic])
def list_users(cp: ControlPlaneDep, caller: CallerDep) -> list[PrincipalPublic]:
    """Every user and service account."""
    authorize(caller, "identity.read")
    return [_public(row) for row in identity_service.list_principals(cp.store)]


@router.post("/users", status_code=status.HTTP_201_CREATED, response_model=PrincipalPublic)
def create_user(
    body: UserCreate, settings: IdentitySettingsDep, cp: ControlPlaneDep, caller: CallerDep
) -> PrincipalPublic:
    """Create a local user with a password; it has no roles until one is bound."""
    authorize(caller, "identity.write")
    row = identity_service.create_user(
        cp.store,
        caller,
        username=body.username,
        password=body.password,
        display_name=body.display_name,
        email=body.email,
        settings=settings,
    )
    return _public(row)


@router.get("/users/{principal_id}", response_model=PrincipalPublic)
def get_user(principal_id: str, cp: ControlPlaneDep, caller: CallerDep) -> PrincipalPublic:
    """One user or service account."""
    authorize(caller, "identity.read")
    return _public(identity_service.get_principal(cp.store, principal_id))


@router.post("/users/{principal_id}/deactivate", response_model=PrincipalPublic)
def deactivate_user(principal_id: str, cp: ControlPlaneDep, caller: CallerDep) -> PrincipalPublic:
    """Deactivate an account: every session and API token it holds stops working at once."""
    authorize(caller, "identity.write")
    return _public(identity_service.deactivate(cp.store, caller, principal_id))


@router.post("/users/{principal_id}/activate", response_model=PrincipalPublic)
def activate_user(principal_id: str, cp: ControlPlaneDep, caller: CallerDep) -> PrincipalPublic:
    """Reactivate an account (its old tokens stay dead)."""
    authorize(caller, "identity.write")
    return _public(identity_service.activate(cp.store, caller, principal_id))


@router.post(
    "/service-accounts", status_code=status.HTTP_201_CREATED, response_model=ServiceAccountIssued
)
def create_service_account(
    body: ServiceAccountCreate,
    settings: IdentitySettingsDep,
    cp: ControlPlaneDep,
    caller: CallerDep,
) -> ServiceAccountIssued:
    """Create a service account for the OAuth2 client-credentials grant at /api/v1/auth/token."""
    authorize(caller, "identity.write")
    row, secret = identity_service.create_service_account(
        cp.store, caller, name=body.name, settings=settings
    )
    public = _public(row)
    return ServiceAccountIssued(**public.model_dump(), client_id=row.id, client_secret=secret)


@router.get("/role-bindings", response_model=list[BindingPublic])
def list_bindings(cp: ControlPlaneDep, caller: CallerDep) -> list[BindingPublic]:
    """Every role binding."""
    authorize(caller, "identity.read")
    return [
        BindingPublic.model_validate(row, from_attributes=True)
        for row in identity_service.list_bindings(cp.store)
    ]


@router.post("/role-bindings", status_code=status.HTTP_201_CREATED, response_model=BindingPublic)
def create_binding(body: BindingCreate, cp: ControlPlaneDep, caller: CallerDep) -> BindingPublic:
    """Grant a role; granting the same binding twice answers the existing one.

    Nobody grants more than they hold outright: the caller must hold every permission of the
    role in the binding's folder (or everywhere, for ``*``) through bindings without a
    condition, so a conditional administrator cannot make itself an unconditional one.
    """
    authorize(caller, "identity.write")
    row = identity_service.create_binding(
        cp.store,
        caller,
        subject_kind=body.subject_kind,
        subject=body.subject,
        role=body.role,
        folder=body.folder,
        condition=body.condition,
    )
    return BindingPublic.model_validate(row, from_attributes=True)


@router.delete("/role-bindings/{binding_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_binding(binding_id: int, cp: ControlPlaneDep, caller: CallerDep) -> None:
    """Revoke a role binding."""
    authorize(caller, "identity.write")
    identity_service.delete_binding(cp.store, caller, binding_id)


@router.get("/folders", response_model=list[FolderPublic])
def list_folders(cp: ControlPlaneDep, caller: CallerDep) -> list[FolderPublic]:
    """The folders the caller can see."""
    return [
        FolderPublic.model_validate(row, from_attributes=True)
        for row in identity_service.visible_folders(cp.store, caller)
    ]


@router.post("/folders", status_code=status.HTTP_201_CREATED, response_model=FolderPublic)
def create_folder(body: FolderCreate, cp: ControlPlaneDep, caller: CallerDep) -> FolderPublic:
    """Create a folder."""
    authorize(caller, "folders.write")
    row = identity_service.create_folder(
        cp.store, caller, name=body.name, description=body.description
    )
    return FolderPublic.model_validate(row, from_attributes=True)
