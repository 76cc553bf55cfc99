"""/api/v1/secrets: write and manage vault secrets; no answer ever carries a value."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from amosflow import audit
from amosflow.api import _problems as problems
from amosflow.api._deps import ControlPlaneDep
from amosflow.api._security import CallerDep
from amosflow.engine.codec import VaultPayloadCodec
from amosflow.errors import ConflictError, NotFoundError, VaultSealedError
from amosflow.identity import Principal, authorize
from amosflow.services import access, auditing
from amosflow.vault import FOLDER_PATTERN, NAME_PATTERN, Rotation, SecretMetadata, Vault
from amosflow.vault._service import MAX_VALUE_CHARS, missing_secret

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.orm import Session

router = APIRouter(prefix="/api/v1/secrets", tags=["secrets"], responses=problems.RESPONSES)


def _vault(request: Request) -> Vault:
    vault: Vault = request.app.state.vault
    return vault


VaultDep = Annotated[Vault, Depends(_vault)]
SecretName = Annotated[str, Path(pattern=NAME_PATTERN, description="Name of the secret.")]
FolderQuery = Annotated[
    str | None,
    Query(
        pattern=FOLDER_PATTERN,
        description="Folder of the secret; needed only when you see the name in several.",
    ),
]


class SecretWrite(BaseModel):
    """A new value for a secret (write-only), and its folder on creation."""

    model_config = ConfigDict(extra="forbid")
    value: str = Field(min_length=1, max_length=MAX_VALUE_CHARS, description="Write-only value.")
    folder: str | None = Field(
        default=None,
        pattern=FOLDER_PATTERN,
        description="Folder of the secret; needed only when the name is ambiguous.",
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


def _holders(vault: Vault, name: str) -> Callable[[], list[str]]:
    return lambda: vault.holders(name)


def _guard(
    vault: Vault, caller: Principal, permission: str, name: str, folder: str | None
) -> SecretMetadata:
    found = access.locate(caller, "secrets", name, folder, _holders(vault, name))
    authorize(caller, permission, folder=found, missing=missing_secret(name))
    try:
        return vault.metadata(name, found)
    except NotFoundError:
        raise NotFoundError(missing_secret(name)) from None


def _audit(
    caller: Principal, action: str, meta: SecretMetadata, **details: Any
) -> Callable[[Session], None]:
    """The audit record of a change, written in the vault's own transaction."""

    def record(session: Session) -> None:
        audit.append(
            session,
            actor=caller.actor,
            action=action,
            resource=f"secrets/{meta.name}",
            folder=meta.folder,
            details=details,
        )

    return record


@router.put(
    "/{name}",
    response_model=SecretPublic,
    responses={201: {"model": SecretPublic, "description": "Created"}},
)
def put_secret(
    name: SecretName,
    body: SecretWrite,
    vault: VaultDep,
    caller: CallerDep,
    *,
    response: Response,
) -> SecretPublic:
    """Create a secret (201) or add a new version of it (200); answers metadata only.

    The value and its audit record commit together: when the record cannot be written,
    nothing is stored (503).
    """
    folder = access.writable_folder(caller, "secrets", name, body.folder, _holders(vault, name))

    def record(session: Session, meta: SecretMetadata, created: bool) -> None:  # noqa: FBT001
        details = {"version": meta.version, "folder": meta.folder, "created": created}
        _audit(caller, "secrets.set", meta, **details)(session)

    meta, created = _unsealed(vault).set(name, body.value, folder, record=record)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return _public(meta)


@router.get("", response_model=list[SecretPublic])
def list_secrets(
    vault: VaultDep, caller: CallerDep, folder: FolderQuery = None
) -> list[SecretPublic]:
    """Metadata of every secret the caller may see (in ``folder`` only, when given)."""
    shown = access.visible_folders(caller, "secrets.read", folder)
    return [_public(meta) for meta in vault.list(shown)]


@router.get("/{name}", response_model=SecretPublic)
def get_secret(
    name: SecretName, vault: VaultDep, caller: CallerDep, folder: FolderQuery = None
) -> SecretPublic:
    """Metadata of one secret."""
    return _public(_guard(vault, caller, "secrets.read", name, folder))


@router.delete("/{name}", response_model=SecretPublic)
def delete_secret(
    name: SecretName, vault: VaultDep, caller: CallerDep, folder: FolderQuery = None
) -> SecretPublic:
    """Delete a secret, destroying every version's ciphertext; answers what it was."""
    meta = _guard(vault, caller, "secrets.write", name, folder)

    def record(session: Session, was: SecretMetadata) -> None:
        _audit(caller, "secrets.delete", was)(session)

    return _public(vault.delete(name, meta.folder, record=record))


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
