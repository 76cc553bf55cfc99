"""Checkpoints: cadence by records and by time, forced ones, the external file, key files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from sqlalchemy import select

from amosflow import audit
from amosflow.errors import AuditError
from amosflow.store import AuditCheckpointRow, Store
from tests.audit.chain import build


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _stored_seqs(store: Store) -> list[int]:
    with store.session(read_only=True) as session:
        return list(
            session.scalars(select(AuditCheckpointRow.seq).order_by(AuditCheckpointRow.seq))
        )


def test_a_checkpoint_is_written_every_n_records_to_the_table_and_the_file(
    store: Store, checkpointer: audit.Checkpointer, sink: audit.JsonlSink
) -> None:
    """With every_records=5, twelve appends leave checkpoints at seq 5 and 10 in both places."""
    build(store, 12, checkpointer)
    assert _stored_seqs(store) == [5, 10]
    assert [c.seq for c in sink.read()] == [5, 10]


def test_a_checkpoint_is_due_after_every_seconds_with_new_records(
    store: Store, signer: audit.CheckpointSigner, sink: audit.JsonlSink
) -> None:
    """Below the record count, a checkpoint comes once the clock passes every_seconds."""
    clock = FakeClock()
    checkpointer = audit.Checkpointer(
        store, signer, sink, every_records=100, every_seconds=60, clock=clock
    )
    build(store, 3, checkpointer)
    assert sink.read() == []
    clock.now += 61
    written = checkpointer.maybe_checkpoint()
    assert written is not None
    assert written.seq == 3
    assert checkpointer.maybe_checkpoint() is None  # nothing new since


def test_a_forced_checkpoint_signs_the_tail_once(
    store: Store, checkpointer: audit.Checkpointer, sink: audit.JsonlSink
) -> None:
    """`checkpoint()` signs the current tail; forcing again with nothing new writes nothing."""
    assert checkpointer.checkpoint() is None  # empty chain
    build(store, 3)
    forced = checkpointer.checkpoint()
    assert forced is not None
    assert forced.seq == 3
    assert checkpointer.checkpoint() is None
    assert [c.seq for c in sink.read()] == [3]


def test_checkpoint_lines_are_signed_canonical_json(
    store: Store,
    checkpointer: audit.Checkpointer,
    sink: audit.JsonlSink,
    settings: audit.AuditSettings,
) -> None:
    """Each line holds seq, hash, time, key id and an Ed25519 signature the public key accepts."""
    build(store, 5, checkpointer)
    (line,) = sink.path.read_text().splitlines()
    assert set(json.loads(line)) == {"seq", "hash", "at", "key_id", "signature"}
    (checkpoint,) = sink.read()
    public = audit.load_public_key(settings.public_key_path)
    assert checkpoint.key_id == audit.key_id(public)
    assert audit.signature_valid(public, checkpoint.payload(), checkpoint.signature)


def test_a_torn_last_line_is_ignored(sink: audit.JsonlSink) -> None:
    """A final line without its newline (a crash mid-write) was never acknowledged, so it is skipped."""
    sink.path.parent.mkdir(parents=True)
    sink.path.write_text('{"seq":1,"hash"')
    assert sink.read() == []


def test_the_key_is_created_private_with_its_public_half_beside_it(
    settings: audit.AuditSettings,
) -> None:
    """First use creates checkpoint.key with mode 0600 and publishes checkpoint.pub."""
    signer = audit.CheckpointSigner.from_file(settings.key_path)
    assert stat.S_IMODE(settings.key_path.stat().st_mode) == 0o600
    public = audit.load_public_key(settings.public_key_path)
    assert audit.key_id(public) == signer.key_id
    again = audit.CheckpointSigner.from_file(settings.key_path)
    assert again.key_id == signer.key_id


def test_two_installs_get_different_keys(tmp_path: Path) -> None:
    """Keys are generated per install, never shipped."""
    first = audit.CheckpointSigner.from_file(tmp_path / "a" / "checkpoint.key")
    second = audit.CheckpointSigner.from_file(tmp_path / "b" / "checkpoint.key")
    assert first.key_id != second.key_id


def test_a_key_file_readable_by_others_is_refused(settings: audit.AuditSettings) -> None:
    """A checkpoint key with mode 0644 is refused with AuditError instead of being used."""
    audit.CheckpointSigner.from_file(settings.key_path)
    settings.key_path.chmod(0o644)
    with pytest.raises(AuditError, match="mode 0644"):
        audit.CheckpointSigner.from_file(settings.key_path)


def test_a_missing_key_is_not_created_when_creation_is_off(tmp_path: Path) -> None:
    """`create=False` reports a missing key rather than minting a new one."""
    with pytest.raises(AuditError, match="does not exist"):
        audit.CheckpointSigner.from_file(tmp_path / "checkpoint.key", create=False)
    assert not (tmp_path / "checkpoint.key").exists()


def test_open_checkpointer_uses_the_install_paths(
    store: Store, settings: audit.AuditSettings
) -> None:
    """The composed checkpointer writes to <home>/audit/checkpoints.jsonl with the home's key."""
    build(store, 2)
    written = audit.open_checkpointer(store, settings).checkpoint()
    assert written is not None
    assert settings.sink_path == settings.home / "audit" / "checkpoints.jsonl"
    assert [c.seq for c in audit.JsonlSink(settings.sink_path).read()] == [2]
