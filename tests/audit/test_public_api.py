"""The public surface of amosflow.audit is pinned, so a change to it is deliberate."""

from __future__ import annotations

from amosflow import audit


def test_the_exports_are_pinned() -> None:
    """``__all__`` lists exactly the supported names, and each one exists."""
    assert sorted(audit.__all__) == sorted(
        [
            "AUDIT_LOCK_KEY", "GENESIS", "AuditRecord", "AuditSettings", "Checkpoint",
            "CheckpointSigner", "CheckpointSink", "Checkpointer", "Hold", "JsonlSink", "OsUser", "Outcome",
            "PendingRecord", "PruneReport", "SiemForwarder", "VerifyReport", "adopt_anchor", "append", "export_cef",
            "export_jsonl", "export_lines", "fingerprint", "json_line", "key_exposure", "key_id", "list_holds", "load_fingerprint_key",
            "load_public_key", "open_checkpointer", "os_user", "place_hold", "prune", "public_key_path",
            "query", "record_bytes", "record_hash", "record_secret_read", "release_hold", "run_checkpoints",
            "signature_valid", "to_cef", "to_syslog", "verify",
        ]
    )  # fmt: skip
    assert all(hasattr(audit, name) for name in audit.__all__)
