"""The vault service: secrets sealed at rest, metadata for everyone, values for the worker only."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime  # noqa: TC003 - a dataclass field type
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from amosflow.errors import (
    ConflictError,
    Diagnostic,
    NotFoundError,
    ValidationFailedError,
    VaultError,
    VaultSealedError,
)
from amosflow.store._types import utcnow
from amosflow.store.tables import SecretRow, SecretVersionRow
from amosflow.vault._codec_keys import CodecKeyRing
from amosflow.vault._envelope import Envelope, open_envelope, seal

if TYPE_CHECKING:
    import builtins
    from pathlib import Path

    from sqlalchemy.orm import Session

    from amosflow.store import Store
    from amosflow.vault._provider import KeyProvider

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,199}$"
FOLDER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
DEFAULT_FOLDER = "default"
MAX_VALUE_CHARS = 64 * 1024


@dataclass(frozen=True)
class SecretMetadata:
    """What anyone may know about a secret: never its value."""

    name: str
    folder: str
    version: int
    kek_id: str
    kek_version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Rotation:
    """The outcome of a KEK rotation: the new version and how many data keys moved to it."""

    kek_id: str
    kek_version: int
    rewrapped: int


def _check(field: str, value: str, pattern: str) -> str:
    if not re.fullmatch(pattern, value):
        raise ValidationFailedError([Diagnostic(f"/{field}", f"must match {pattern}")])
    return value


def _envelope(row: SecretVersionRow) -> Envelope:
    return Envelope(row.ciphertext, row.nonce, row.wrapped_key, row.kek_id, row.kek_version)


class Vault:
    """Secrets in the store, encrypted by envelope under ``provider``; sealed without one."""

    def __init__(
        self, store: Store, provider: KeyProvider | None, *, codec_keys: Path | None = None
    ) -> None:
        self.store = store
        self._provider = provider
        # The payload codec's keys are wrapped by the same KEKs: rotation re-wraps them too,
        # and a KEK version still wrapping one of them cannot be retired.
        self._codec_keys = codec_keys

    def _codec_ring(self) -> CodecKeyRing | None:
        if self._codec_keys is None or not self._codec_keys.exists():
            return None
        return CodecKeyRing(self._codec_keys, self._key_provider())

    @property
    def sealed(self) -> bool:
        """True when the vault has no key material: values can be neither written nor read."""
        return self._provider is None

    def _key_provider(self) -> KeyProvider:
        if self._provider is None:
            raise VaultSealedError("the vault is sealed: it has no key material")
        return self._provider

    def _live(self, session: Session, name: str, *, lock: bool = False) -> SecretRow:
        query = select(SecretRow).where(SecretRow.name == name)
        row = session.scalars(query.with_for_update() if lock else query).one_or_none()
        if row is None or row.deleted:
            raise NotFoundError(f"secret {name!r} does not exist")
        return row

    def _metadata(self, session: Session, row: SecretRow) -> SecretMetadata:
        current = session.get(SecretVersionRow, (row.name, row.current_version))
        if current is None:
            raise VaultError(f"secret {row.name!r} has lost its version {row.current_version}")
        return SecretMetadata(
            name=row.name,
            folder=row.folder,
            version=row.current_version,
            kek_id=current.kek_id,
            kek_version=current.kek_version,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def set(self, name: str, value: str, folder: str | None = None) -> tuple[SecretMetadata, bool]:
        """Store ``value`` as a new version; return its metadata and whether the secret is new.

        ``folder`` defaults to ``default`` for a new secret and to its own folder for an update;
        moving a secret to another folder is a conflict.
        """
        _check("name", name, NAME_PATTERN)
        if folder is not None:
            _check("folder", folder, FOLDER_PATTERN)
        if not value or len(value) > MAX_VALUE_CHARS:
            raise ValidationFailedError(
                [Diagnostic("/value", f"must have 1 to {MAX_VALUE_CHARS} characters")]
            )
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValidationFailedError(
                [Diagnostic("/value", "must be valid Unicode text (no lone surrogates)")]
            ) from None
        provider = self._key_provider()
        try:
            with self.store.session() as session:
                row = session.scalars(
                    select(SecretRow).where(SecretRow.name == name).with_for_update()
                ).one_or_none()
                created = row is None or row.deleted
                if row is None:
                    row = SecretRow(name=name, folder=folder or DEFAULT_FOLDER, current_version=0)
                    row.created_at = utcnow()
                    session.add(row)
                elif row.deleted:
                    row.folder, row.deleted = folder or DEFAULT_FOLDER, False
                    row.created_at = utcnow()
                elif folder is not None and folder != row.folder:
                    raise ConflictError(f"secret {name!r} lives in folder {row.folder!r}")
                version = row.current_version + 1
                sealed = seal(provider, name, version, row.folder, value)
                session.add(
                    SecretVersionRow(
                        name=name,
                        version=version,
                        ciphertext=sealed.ciphertext,
                        nonce=sealed.nonce,
                        wrapped_key=sealed.wrapped_key,
                        kek_id=sealed.kek_id,
                        kek_version=sealed.kek_version,
                    )
                )
                row.current_version, row.updated_at = version, utcnow()
                session.flush()
                return self._metadata(session, row), created
        except IntegrityError:
            raise ConflictError(f"secret {name!r} was changed at the same time; retry") from None

    def metadata(self, name: str) -> SecretMetadata:
        """The metadata of one secret."""
        with self.store.session(read_only=True) as session:
            return self._metadata(session, self._live(session, name))

    def list(self) -> builtins.list[SecretMetadata]:
        """The metadata of every secret, by name."""
        with self.store.session(read_only=True) as session:
            rows = session.scalars(
                select(SecretRow).where(SecretRow.deleted.is_(False)).order_by(SecretRow.name)
            )
            return [self._metadata(session, row) for row in rows]

    def names(self, candidates: builtins.list[str]) -> builtins.set[str]:
        """The subset of ``candidates`` that the vault holds (no key material needed)."""
        if not candidates:
            return set()
        with self.store.session(read_only=True) as session:
            found = session.scalars(
                select(SecretRow.name).where(
                    SecretRow.name.in_(candidates), SecretRow.deleted.is_(False)
                )
            )
            return set(found)

    def delete(self, name: str) -> SecretMetadata:
        """Delete a secret and destroy every version's ciphertext; return what it was."""
        with self.store.session() as session:
            row = self._live(session, name, lock=True)
            was = self._metadata(session, row)
            for version in session.scalars(
                select(SecretVersionRow).where(SecretVersionRow.name == name)
            ):
                session.delete(version)
            row.deleted, row.updated_at = True, utcnow()
        return was

    def reveal(self, name: str, folder: str | None = None) -> str:
        """Decrypt the current version: for the worker-side resolver only, never for the API.

        With ``folder`` given, a secret of another folder is not found. Sealed fails closed.
        """
        with self.store.session(read_only=True) as session:
            row = self._live(session, name)
            if folder is not None and row.folder != folder:
                raise NotFoundError(f"secret {name!r} does not exist in folder {folder!r}")
            provider = self._key_provider()
            current = session.get(SecretVersionRow, (name, row.current_version))
            if current is None:
                raise VaultError(f"secret {name!r} has lost its version {row.current_version}")
            return open_envelope(provider, _envelope(current), name, current.version, row.folder)

    def rewrap_all(self) -> int:
        """Re-wrap every data key not under the current KEK, one row per transaction (online).

        Ciphertexts stay as they are; only wrapped keys and their KEK version change.
        """
        provider = self._key_provider()
        current = provider.versions()[-1]
        moved = 0
        with self.store.session(read_only=True) as session:
            keys = list(
                session.execute(
                    select(SecretVersionRow.name, SecretVersionRow.version).where(
                        (SecretVersionRow.kek_id != provider.kek_id)
                        | (SecretVersionRow.kek_version != current)
                    )
                )
            )
        for name, version in keys:
            with self.store.session() as session:
                row = session.scalars(
                    select(SecretVersionRow)
                    .where(SecretVersionRow.name == name, SecretVersionRow.version == version)
                    .with_for_update()
                ).one_or_none()
                if row is None:  # deleted meanwhile
                    continue
                if row.kek_id != provider.kek_id:
                    raise VaultError(
                        f"secret {name!r} version {version} is wrapped by key ring {row.kek_id!r}"
                    )
                dek = provider.unwrap(row.kek_version, row.wrapped_key)
                row.kek_version, row.wrapped_key = provider.wrap(dek)
                moved += 1
        return moved

    def rotate_kek(self) -> Rotation:
        """Add a KEK version and re-wrap every stored data key with it."""
        provider = self._key_provider()
        version = provider.rotate()
        rewrapped = self.rewrap_all()
        ring = self._codec_ring()
        if ring is not None:
            ring.rewrap()
        return Rotation(provider.kek_id, version, rewrapped)

    def kek_usage(self) -> dict[int, int]:
        """How many data keys each KEK version of this key ring still wraps."""
        provider = self._key_provider()
        with self.store.session(read_only=True) as session:
            counts = session.execute(
                select(SecretVersionRow.kek_version, func.count())
                .where(SecretVersionRow.kek_id == provider.kek_id)
                .group_by(SecretVersionRow.kek_version)
            )
            usage = {int(version): int(count) for version, count in counts}
        ring = self._codec_ring()
        for version, count in (ring.kek_usage() if ring is not None else {}).items():
            usage[version] = usage.get(version, 0) + count
        return usage

    def retire_kek(self, version: int) -> None:
        """Retire KEK ``version``; refused while any data key is still wrapped with it."""
        in_use = self.kek_usage().get(version, 0)
        if in_use:
            raise ConflictError(
                f"KEK version {version} still wraps {in_use} data key(s); run a rotation first"
            )
        self._key_provider().retire(version)
