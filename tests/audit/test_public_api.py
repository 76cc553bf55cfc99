"""The public surface of amosflow.audit is pinned, so a change to it is deliberate."""

from __future__ import annotations

from amosflow import audit


def test_the_exports_are_pinned() -> None:
    """``__all__`` lists exactly the supported names, and each one exists."""
    assert sorted(audit.__all__) == sorted(
        [
            "AUDIT_LOCK_KEY", "GENESIS", "AuditRecord", "AuditSettings", "Checkpoint",
            "CheckpointSigner", "CheckpointSink", "Checkpointer", "JsonlSink", "Outcome",
            "VerifyReport", "append", "export_jsonl", "fingerprint", "key_id",
            "load_fingerprint_key", "load_public_key", "open_checkpointer", "public_key_path",
            "query", "record_bytes", "record_hash", "signature_valid", "verify",
        ]
    )  # fmt: skip
    assert all(hasattr(audit, name) for name in audit.__all__)
