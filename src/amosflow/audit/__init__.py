"""The hash-chained audit trail: append in the caller's transaction, checkpoint, verify.

``append(session, ...)`` adds one record whose SHA-256 covers the RFC 8785 canonical JSON of
its fields and the previous record's hash; ``Checkpointer`` signs the tail with a per-install
Ed25519 key into a sink outside the database (``run_checkpoints`` does it in a process of its
own); ``verify`` names the first bad record. ``SiemForwarder`` ships records to a syslog
receiver as CEF or JSON; ``prune`` removes the oldest records up to any legal hold and signs
what it removed, as ``place_hold``/``release_hold`` sign holds; ``key_exposure`` tells whether
an OS user (the API's) could reach the checkpoint key or change what a verifier trusts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amosflow.audit._auto import run_checkpoints
from amosflow.audit._canonical import GENESIS, record_bytes, record_hash
from amosflow.audit._chainer import AUDIT_LOCK_KEY
from amosflow.audit._checkpoints import Checkpoint, Checkpointer, CheckpointSink, JsonlSink
from amosflow.audit._doctor import OsUser, key_exposure, os_user
from amosflow.audit._keys import (
    CheckpointSigner,
    key_id,
    load_fingerprint_key,
    load_public_key,
    public_key_path,
    signature_valid,
)
from amosflow.audit._query import export_jsonl, export_lines, json_line, query
from amosflow.audit._records import (
    AuditRecord,
    Outcome,
    PendingRecord,
    append,
    fingerprint,
    record_secret_read,
)
from amosflow.audit._retention import (
    Hold,
    PruneReport,
    adopt_anchor,
    list_holds,
    place_hold,
    prune,
    release_hold,
)
from amosflow.audit._siem import SiemForwarder, export_cef, to_cef, to_syslog
from amosflow.audit._verify import VerifyReport, verify
from amosflow.config import AuditSettings

if TYPE_CHECKING:
    from amosflow.store import Store


def open_checkpointer(store: Store, settings: AuditSettings | None = None) -> Checkpointer:
    """Build the install's checkpointer: its key (created on first use) and its JSONL sink."""
    settings = settings or AuditSettings()
    return Checkpointer(
        store,
        CheckpointSigner.from_file(settings.key_path),
        JsonlSink(settings.sink_path),
        every_records=settings.audit_checkpoint_records,
        every_seconds=settings.audit_checkpoint_seconds,
    )


__all__ = [
    "AUDIT_LOCK_KEY",
    "GENESIS",
    "AuditRecord",
    "AuditSettings",
    "Checkpoint",
    "CheckpointSigner",
    "CheckpointSink",
    "Checkpointer",
    "Hold",
    "JsonlSink",
    "OsUser",
    "Outcome",
    "PendingRecord",
    "PruneReport",
    "SiemForwarder",
    "VerifyReport",
    "adopt_anchor",
    "append",
    "export_cef",
    "export_jsonl",
    "export_lines",
    "fingerprint",
    "json_line",
    "key_exposure",
    "key_id",
    "list_holds",
    "load_fingerprint_key",
    "load_public_key",
    "open_checkpointer",
    "os_user",
    "place_hold",
    "prune",
    "public_key_path",
    "query",
    "record_bytes",
    "record_hash",
    "record_secret_read",
    "release_hold",
    "run_checkpoints",
    "signature_valid",
    "to_cef",
    "to_syslog",
    "verify",
]
