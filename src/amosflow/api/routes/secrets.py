"""/api/v1/secrets: write and manage vault secrets; no answer ever carries a value."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from amosflow.api import problems
from amosflow.api.deps import ControlPlaneDep
from amosflow.api.security import CallerDep
from amosflow.engine.codec import VaultPayloadCodec
from amosflow.errors import ConflictError, NotFoundError, VaultSealedError
from amosflow.identity.policy import authorize, folder_scope
from amosflow.identity.principal import Principal
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


def _guard(vault: Vault, caller: Principal, permission: str, name: str) -> SecretMetadata:
    try:
        meta = vault.metadata(name)
    except NotFoundError:
        raise NotFoundError(_missing(name)) from None
    authorize(caller, permission, folder=meta.folder, missing=_missing(name))
    return meta


def _missing(name: str) -> str:
    return f"secret {name!r} does not exist"


@router.put(
    "/{name}",
    response_model=SecretPublic,
    responses={201: {"model": SecretPublic, "description": "Created"}},
)
def put_secret(
    name: SecretName,
    body: SecretWrite,
    vault: VaultDep,
    cp: ControlPlaneDep,
    caller: CallerDep,
    *,
    response: Response,
) -> SecretPublic:
    """Create a secret (201) or add a new version of it (200); answers metadata only."""
    try:
        current = vault.metadata(name).folder
    except NotFoundError:
        target = body.folder or "default"
        authorize(caller, "secrets.write", folder=target, missing=f"folder {target!r} not found")
    else:
        authorize(caller, "secrets.write", folder=current, missing=_missing(name))
        if body.folder is not None and body.folder != current:
            authorize(caller, "secrets.write", folder=body.folder, missing=_missing(name))
    meta, created = _unsealed(vault).set(name, body.value, body.folder)
    auditing.record(
        cp.store,
        actor=caller.actor,
        action="secrets.set",
        resource=f"secrets/{name}",
        folder=meta.folder,
        details={"version": meta.version, "folder": meta.folder, "created": created},
    )
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return _public(meta)


@router.get("", response_model=list[SecretPublic])
def list_secrets(vault: VaultDep, caller: CallerDep) -> list[SecretPublic]:
    """Metadata of every secret the caller may see, by name."""
    scope = folder_scope(caller, "secrets.read")
    return [_public(meta) for meta in vault.list() if meta.folder in scope]


@router.get("/{name}", response_model=SecretPublic)
def get_secret(name: SecretName, vault: VaultDep, caller: CallerDep) -> SecretPublic:
    """Metadata of one secret."""
    return _public(_guard(vault, caller, "secrets.read", name))


@router.delete("/{name}", response_model=SecretPublic)
def delete_secret(
    name: SecretName, vault: VaultDep, cp: ControlPlaneDep, caller: CallerDep
) -> SecretPublic:
    """Delete a secret, destroying every version's ciphertext; answers what it was."""
    _guard(vault, caller, "secrets.write", name)
    meta = vault.delete(name)
    auditing.record(
        cp.store,
        actor=caller.actor,
        action="secrets.delete",
        resource=f"secrets/{name}",
        folder=meta.folder,
        details={},
    )
    return _public(meta)


@router.post("/rotate", response_model=RotationPublic)
def rotate_kek(vault: VaultDep, cp: ControlPlaneDep, caller: CallerDep) -> RotationPublic:
    """Add a KEK version and re-wrap every stored data key with it (values unchanged).

    The key ring is shared by every folder, so only a caller who may write secrets
    everywhere may rotate it.
    """
    authorize(caller, "secrets.write")
    rotation: Rotation = _unsealed(vault).rotate_kek()
    auditing.record(
        cp.store, actor=caller.actor, action="secrets.rotate_kek", resource="vault", details={}
    )
    return RotationPublic.model_validate(rotation, from_attributes=True)


class CodecRotationPublic(BaseModel):
    """The payload codec's key ring after a rotation."""

    key_id: str = Field(description="The key new Temporal payloads are encrypted with.")
    keys: int = Field(description="How many codec keys the ring holds (older ones still decrypt).")


@router.post("/codec/rotate", response_model=CodecRotationPublic)
async def rotate_codec_key(cp: ControlPlaneDep, caller: CallerDep) -> CodecRotationPublic:
    """Add a payload-codec key and make it current for every process of the node.

    Payloads written before keep naming their key, which stays in the ring, so old runs and
    histories still decode. Like the KEK, the codec key serves every folder.
    """
    authorize(caller, "secrets.write")
    codec = cp.client.data_converter.payload_codec
    if not isinstance(codec, VaultPayloadCodec):
        raise ConflictError("this node does not encrypt Temporal payloads, so it has no codec key")
    ring = await codec.ring()
    key_id = await asyncio.to_thread(ring.rotate)
    keys = len(await asyncio.to_thread(ring.ids))
    auditing.record(
        cp.store,
        actor=caller.actor,
        action="secrets.rotate_codec",
        resource="vault",
        details={"key_id": key_id},
    )
    return CodecRotationPublic(key_id=key_id, keys=keys)
