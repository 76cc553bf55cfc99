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
from amosflow.store import SecretRow, SecretVersionRow
from amosflow.store._types import utcnow
from amosflow.vault._codec_keys import CodecKeyRing
from amosflow.vault._envelope import Envelope, open_envelope, seal

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable, Iterable
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


def missing_secret(name: str) -> str:
    """The one message for a secret that does not exist or is in a folder the caller can't see."""
    return f"no secrets named {name!r}"


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

    def _live(self, session: Session, folder: str, name: str, *, lock: bool = False) -> SecretRow:
        query = select(SecretRow).where(SecretRow.folder == folder, SecretRow.name == name)
        row = session.scalars(query.with_for_update() if lock else query).one_or_none()
        if row is None or row.deleted:
            raise NotFoundError(missing_secret(name))
        return row

    def _metadata(self, session: Session, row: SecretRow) -> SecretMetadata:
        current = session.get(SecretVersionRow, (row.folder, row.name, row.current_version))
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

    def set(
        self,
        name: str,
        value: str,
        folder: str,
        *,
        record: Callable[[Session, SecretMetadata, bool], None] | None = None,
    ) -> tuple[SecretMetadata, bool]:
        """Store ``value`` as a new version of ``folder``'s secret ``name``.

        Returns its metadata and whether the secret is new. ``record`` runs inside the same
        transaction before it commits (the audit record): when it fails, nothing is stored.
        """
        _check("name", name, NAME_PATTERN)
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
                    select(SecretRow)
                    .where(SecretRow.folder == folder, SecretRow.name == name)
                    .with_for_update()
                ).one_or_none()
                created = row is None or row.deleted
                if row is None:
                    row = SecretRow(name=name, folder=folder, current_version=0)
                    row.created_at = utcnow()
                    session.add(row)
                elif row.deleted:
                    row.deleted = False
                    row.created_at = utcnow()
                version = row.current_version + 1
                sealed = seal(provider, name, version, row.folder, value)
                session.add(
                    SecretVersionRow(
                        folder=folder,
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
                meta = self._metadata(session, row)
                if record is not None:
                    record(session, meta, created)
                return meta, created
        except IntegrityError:
            raise ConflictError(f"secret {name!r} was changed at the same time; retry") from None

    def metadata(self, name: str, folder: str) -> SecretMetadata:
        """The metadata of ``folder``'s secret ``name``."""
        with self.store.session(read_only=True) as session:
            return self._metadata(session, self._live(session, folder, name))

    def holders(self, name: str) -> builtins.list[str]:
        """The folders that hold a live secret called ``name``, sorted."""
        with self.store.session(read_only=True) as session:
            return sorted(
                session.scalars(
                    select(SecretRow.folder).where(
                        SecretRow.name == name, SecretRow.deleted.is_(False)
                    )
                )
            )

    def list(self, folders: Iterable[str] | None = None) -> builtins.list[SecretMetadata]:
        """The metadata of every secret (of ``folders`` only, when given), by folder and name."""
        with self.store.session(read_only=True) as session:
            query = select(SecretRow).where(SecretRow.deleted.is_(False))
            if folders is not None:
                query = query.where(SecretRow.folder.in_(list(folders)))
            rows = session.scalars(query.order_by(SecretRow.folder, SecretRow.name))
            return [self._metadata(session, row) for row in rows]

    def names(self, candidates: builtins.list[str], folder: str) -> builtins.set[str]:
        """The subset of ``candidates`` that ``folder``'s vault holds (no key material needed)."""
        if not candidates:
            return set()
        with self.store.session(read_only=True) as session:
            found = session.scalars(
                select(SecretRow.name).where(
                    SecretRow.folder == folder,
                    SecretRow.name.in_(candidates),
                    SecretRow.deleted.is_(False),
                )
            )
            return set(found)

    def delete(
        self,
        name: str,
        folder: str,
        *,
        record: Callable[[Session, SecretMetadata], None] | None = None,
    ) -> SecretMetadata:
        """Delete a secret and destroy every version's ciphertext; return what it was.

        ``record`` runs inside the same transaction (the audit record): when it fails,
        nothing is deleted.
        """
        with self.store.session() as session:
            row = self._live(session, folder, name, lock=True)
            was = self._metadata(session, row)
            for version in session.scalars(
                select(SecretVersionRow).where(
                    SecretVersionRow.folder == folder, SecretVersionRow.name == name
                )
            ):
                session.delete(version)
            row.deleted, row.updated_at = True, utcnow()
            if record is not None:
                record(session, was)
        return was

    def reveal(self, name: str, folder: str) -> str:
        """Decrypt ``folder``'s secret ``name``: for the run-time resolvers only, never the API.

        A run resolves only in its own folder; a secret of another folder is not found, with
        the same message as one that does not exist. Sealed fails closed.
        """
        with self.store.session(read_only=True) as session:
            row = self._live(session, folder, name)
            provider = self._key_provider()
            current = session.get(SecretVersionRow, (folder, name, row.current_version))
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
                    select(
                        SecretVersionRow.folder, SecretVersionRow.name, SecretVersionRow.version
                    ).where(
                        (SecretVersionRow.kek_id != provider.kek_id)
                        | (SecretVersionRow.kek_version != current)
                    )
                )
            )
        for folder, name, version in keys:
            with self.store.session() as session:
                row = session.scalars(
                    select(SecretVersionRow)
                    .where(
                        SecretVersionRow.folder == folder,
                        SecretVersionRow.name == name,
                        SecretVersionRow.version == version,
                    )
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
