"""/api/v1/secrets: write and manage vault secrets; no answer ever carries a value."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from amosflow.api import problems
from amosflow.api.deps import ControlPlaneDep
from amosflow.errors import VaultSealedError
from amosflow.services import auditing
from amosflow.vault import FOLDER_PATTERN, NAME_PATTERN, Rotation, SecretMetadata, Vault
from amosflow.vault._service import MAX_VALUE_CHARS

router = APIRouter(prefix="/api/v1/secrets", tags=["secrets"], responses=problems.RESPONSES)


def _vault(request: Request) -> Vault:
    vault: Vault = request.app.state.vault
    return vault


VaultDep = Annotated[Vault, Depends(_vault)]
SecretName = Annotated[str, Path(pattern=NAME_PATTERN, description="Name of the secret.")]


class SecretWrite(BaseModel):
    """A new value for a secret (write-only), and its folder on creation."""

    model_config = ConfigDict(extra="forbid")
    value: str = Field(min_length=1, max_length=MAX_VALUE_CHARS, description="Write-only value.")
    folder: str | None = Field(
        default=None, pattern=FOLDER_PATTERN, description="Folder; `default` for a new secret."
    )


class SecretPublic(BaseModel):
    """What the API tells about a secret: metadata only, never the value."""

    name: str
    folder: str
    version: int
    kek_id: str
    kek_version: int
    created_at: datetime
    updated_at: datetime


class RotationPublic(BaseModel):
    """The outcome of a KEK rotation."""

    kek_id: str
    kek_version: int
    rewrapped: int = Field(description="Data keys re-wrapped with the new KEK version.")


def _public(meta: SecretMetadata) -> SecretPublic:
    return SecretPublic.model_validate(meta, from_attributes=True)


def _unsealed(vault: Vault) -> Vault:
    if vault.sealed:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(VaultSealedError("sealed")))
    return vault


@router.put(
    "/{name}",
    response_model=SecretPublic,
    responses={201: {"model": SecretPublic, "description": "Created"}},
)
def put_secret(
    name: SecretName, body: SecretWrite, vault: VaultDep, cp: ControlPlaneDep, response: Response
) -> SecretPublic:
    """Create a secret (201) or add a new version of it (200); answers metadata only."""
    meta, created = _unsealed(vault).set(name, body.value, body.folder)
    auditing.record(
        cp.store,
        action="secrets.set",
        resource=f"secrets/{name}",
        details={"version": meta.version, "folder": meta.folder, "created": created},
    )
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return _public(meta)


@router.get("", response_model=list[SecretPublic])
def list_secrets(vault: VaultDep) -> list[SecretPublic]:
    """Metadata of every secret, by name."""
    return [_public(meta) for meta in vault.list()]


@router.get("/{name}", response_model=SecretPublic)
def get_secret(name: SecretName, vault: VaultDep) -> SecretPublic:
    """Metadata of one secret."""
    return _public(vault.metadata(name))


@router.delete("/{name}", response_model=SecretPublic)
def delete_secret(name: SecretName, vault: VaultDep, cp: ControlPlaneDep) -> SecretPublic:
    """Delete a secret, destroying every version's ciphertext; answers what it was."""
    meta = vault.delete(name)
    auditing.record(cp.store, action="secrets.delete", resource=f"secrets/{name}", details={})
    return _public(meta)


@router.post("/rotate", response_model=RotationPublic)
def rotate_kek(vault: VaultDep, cp: ControlPlaneDep) -> RotationPublic:
    """Add a KEK version and re-wrap every stored data key with it (values unchanged)."""
    rotation: Rotation = _unsealed(vault).rotate_kek()
    auditing.record(cp.store, action="secrets.rotate_kek", resource="vault", details={})
    return RotationPublic.model_validate(rotation, from_attributes=True)
