"""Values derived from secrets reach the trail only as keyed fingerprints."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from sqlalchemy import select

from amosflow import audit
from amosflow.store import AuditCheckpointRow, AuditRow, Store

CANARY = "canary-7d1e0c5b-never-in-the-trail"


def _everything_stored(store: Store, sink: audit.JsonlSink) -> str:
    """Every column of every audit row and checkpoint, the export and the sink, as one text."""
    parts: list[str] = []
    with store.session(read_only=True) as session:
        for table in (AuditRow, AuditCheckpointRow):
            rows = session.execute(select(table.__table__)).all()  # type: ignore[attr-defined]
            parts.extend(json.dumps([str(value) for value in row]) for row in rows)
        out = io.StringIO()
        audit.export_jsonl(session, out)
    parts.append(out.getvalue())
    parts.append(sink.path.read_text())
    return "\n".join(parts)


def test_a_planted_secret_appears_only_as_its_fingerprint(
    store: Store,
    checkpointer: audit.Checkpointer,
    sink: audit.JsonlSink,
    settings: audit.AuditSettings,
) -> None:
    """Neither the canary nor its plain SHA-256 is stored anywhere; its HMAC is."""
    key = audit.load_fingerprint_key(settings.fingerprint_key_path)
    token = audit.fingerprint(CANARY, key)
    with store.session() as session:
        audit.append(
            session,
            actor="token:" + token,
            action="auth.token_failed",
            resource="api",
            outcome="denied",
            details={"presented": token},
        )
    checkpointer.checkpoint()
    stored = _everything_stored(store, sink)
    assert CANARY not in stored
    assert hashlib.sha256(CANARY.encode()).hexdigest() not in stored
    assert token in stored


def test_fingerprints_depend_on_the_install_key(tmp_path: Path) -> None:
    """The same secret fingerprints differently under another install's key."""
    first = audit.load_fingerprint_key(tmp_path / "a.key")
    second = audit.load_fingerprint_key(tmp_path / "b.key")
    assert audit.fingerprint(CANARY, first) == audit.fingerprint(CANARY, first)
    assert audit.fingerprint(CANARY, first) != audit.fingerprint(CANARY, second)
    assert audit.fingerprint(CANARY, first).startswith("hmac-sha256:")
