"""Retention: prune a prefix of the chain up to any legal hold; verify from the anchor."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from amosflow import audit
from amosflow.errors import AuditError, ConflictError, NotFoundError, ValidationFailedError
from amosflow.store import AuditAnchorRow, AuditHoldRow, AuditRow, Store, open_store
from amosflow.store._types import utcnow
from tests.audit.chain import build, delete_where, drop_stored_checkpoints, rehash_from, row
from tests.audit.chain import set_columns as set_record

ACTOR = "user:keeper"


def _seqs(store: Store) -> list[int]:
    with store.session(read_only=True) as session:
        return list(session.scalars(select(AuditRow.seq).order_by(AuditRow.seq)))


def _at(store: Store, seq: int) -> datetime:
    at = row(store, seq)["at"]
    assert isinstance(at, datetime)
    return at


def _older_than(store: Store, before: datetime) -> int:
    """How many leading records are strictly older than ``before`` (what prune may take)."""
    count = 0
    for seq in _seqs(store):
        if _at(store, seq) >= before:
            break
        count = seq
    return count


def _anchor(store: Store) -> tuple[int, str] | None:
    with store.session(read_only=True) as session:
        found = session.get(AuditAnchorRow, 1)
        return None if found is None else (found.seq, found.hash)


def _verify(store: Store, checkpointer: audit.Checkpointer) -> audit.VerifyReport:
    return audit.verify(store, sink=checkpointer.sink, public_key=checkpointer.signer.public_key)


def _prune(checkpointer: audit.Checkpointer, **options: Any) -> audit.PruneReport:
    """Prune as retention does: signed with the install's checkpoint key into its sink."""
    return audit.prune(
        checkpointer.store, signer=checkpointer.signer, sink=checkpointer.sink, **options
    )


def _hold(checkpointer: audit.Checkpointer, folder: str, reason: str = "case 42") -> int:
    return audit.place_hold(
        checkpointer.store,
        folder=folder,
        reason=reason,
        actor=ACTOR,
        signer=checkpointer.signer,
        sink=checkpointer.sink,
    )


def _release(checkpointer: audit.Checkpointer, hold: int, actor: str = ACTOR) -> audit.Hold:
    return audit.release_hold(
        checkpointer.store, hold, actor=actor, signer=checkpointer.signer, sink=checkpointer.sink
    )


def test_prune_removes_the_oldest_records_and_verify_starts_at_the_anchor(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """Records older than the cut-off go; the anchor is the last one's seq and hash; verify ok."""
    build(store, 12, checkpointer)
    before = _at(store, 8)
    through = _older_than(store, before)
    last_removed = row(store, through)["hash"]
    report = _prune(checkpointer, before=before)
    assert (report.deleted, report.first_seq, report.through_seq) == (through, 1, through)
    assert (report.anchor_seq, report.anchor_hash) == (through, last_removed)
    assert report.record_seq == 13
    assert _anchor(store) == (through, last_removed)
    assert _seqs(store) == list(range(through + 1, 14))
    assert row(store, through + 1)["prev_hash"] == last_removed
    pruned = row(store, 13)
    assert (pruned["action"], pruned["actor"]) == ("audit.prune", "service:retention")
    assert pruned["details"]["anchor_seq"] == through
    assert pruned["details"]["deleted"] == through
    verified = _verify(store, checkpointer)
    assert verified == audit.VerifyReport(
        ok=True, checked=13 - through, last_checkpoint_seq=10, anchor_seq=through
    )


def test_checkpoints_older_than_the_anchor_are_skipped(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """The checkpoint at seq 5 signs records that are gone: skipped, and the one at 10 holds."""
    build(store, 12, checkpointer)
    _prune(checkpointer, before=_at(store, 7))
    assert [c.seq for c in checkpointer.sink.read()] == [5, 10]
    report = _verify(store, checkpointer)
    assert (report.ok, report.last_checkpoint_seq) == (True, 10)


def test_appends_after_pruning_everything_continue_the_chain(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """With every record removed, the prune record and later ones link on from the anchor."""
    build(store, 4, checkpointer)
    report = _prune(checkpointer, before=datetime.now(UTC))
    assert (report.deleted, report.anchor_seq, report.record_seq) == (4, 4, 5)
    build(store, 2, checkpointer)
    checkpointer.checkpoint()
    second = _prune(checkpointer, before=_at(store, 6) + timedelta(microseconds=1))
    assert (second.first_seq, second.through_seq, second.record_seq) == (5, 6, 8)
    assert _seqs(store) == [7, 8]
    report_after = _verify(store, checkpointer)
    assert report_after.ok, report_after.problem
    assert report_after.anchor_seq == 6


def test_nothing_to_prune_still_leaves_an_audit_record(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """A prune that removes nothing says why, and is recorded like any other."""
    build(store, 3)
    report = _prune(checkpointer, before=_at(store, 1))
    assert (report.deleted, report.anchor_seq) == (0, None)
    assert "not older than the cut-off" in report.stopped_by
    assert row(store, 4)["action"] == "audit.prune"
    assert _verify(store, checkpointer).ok


def test_a_hold_on_a_folder_stops_pruning_at_its_first_record(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """Seq 4 is in folder finance: with finance held, only seq 1..3 go, the rest stays."""
    build(store, 8)
    hold = _hold(checkpointer, "finance", "case 42")
    report = _prune(checkpointer, before=datetime.now(UTC))
    assert (report.deleted, report.through_seq) == (3, 3)
    assert f"held by hold {hold}" in report.stopped_by
    assert _seqs(store)[0] == 4
    assert _verify(store, checkpointer).ok


def test_a_hold_on_every_folder_stops_everything_until_released(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """A `*` hold keeps every record; once released, pruning proceeds; both are audited."""
    build(store, 5)
    hold = _hold(checkpointer, "*", "litigation")
    assert _prune(checkpointer, before=datetime.now(UTC)).deleted == 0
    assert _seqs(store)[0] == 1
    assert [h.id for h in audit.list_holds(store)] == [hold]
    released = _release(checkpointer, hold)
    assert not released.active
    assert audit.list_holds(store) == []
    assert [h.id for h in audit.list_holds(store, include_released=True)] == [hold]
    report = _prune(checkpointer, before=datetime.now(UTC))
    assert report.deleted == 8  # five records, the hold, the first prune, the release
    assert _verify(store, checkpointer).ok


def test_placing_and_releasing_a_hold_is_audited(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """Each hold change is a record naming the actor, the hold and its folder."""
    hold = _hold(checkpointer, "finance", "case 42")
    _release(checkpointer, hold, "user:boss")
    placed, released = row(store, 1), row(store, 2)
    assert (placed["action"], placed["actor"], placed["folder"]) == (
        "audit_holds.place", ACTOR, "finance",
    )  # fmt: skip
    assert placed["resource"] == released["resource"] == f"audit_hold:{hold}"
    assert placed["details"] == {"hold_id": hold, "reason": "case 42"}
    assert (released["action"], released["actor"]) == ("audit_holds.release", "user:boss")


def test_hold_mistakes_are_refused(store: Store, checkpointer: audit.Checkpointer) -> None:
    """An unknown or already released hold, or an empty reason, is an error, not a no-op."""
    with pytest.raises(NotFoundError):
        _release(checkpointer, 99)
    hold = _hold(checkpointer, "finance", "case")
    _release(checkpointer, hold)
    with pytest.raises(ConflictError):
        _release(checkpointer, hold)
    with pytest.raises(ValidationFailedError):
        _hold(checkpointer, "finance", " ")


def test_prune_keeps_records_not_yet_shipped(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """``max_seq`` (the SIEM cursor) caps what may go, however old the rest is."""
    build(store, 6)
    report = _prune(checkpointer, before=datetime.now(UTC), max_seq=2)
    assert report.through_seq == 2
    assert "not been shipped" in report.stopped_by


def test_prune_refuses_bad_cut_offs(store: Store, checkpointer: audit.Checkpointer) -> None:
    """A naive time or one in the future is refused before anything is touched."""
    build(store, 2)
    with pytest.raises(ValidationFailedError):
        _prune(checkpointer, before=datetime(2020, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValidationFailedError):
        _prune(checkpointer, before=datetime.now(UTC) + timedelta(days=1))
    assert _seqs(store) == [1, 2]


def test_prune_refuses_to_remove_tampered_records(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """An edited record inside the range would be laundered by removing it: prune refuses."""
    build(store, 6)
    set_record(store, 3, actor="user:mallory")
    with pytest.raises(AuditError, match="refusing to prune: seq 3"):
        _prune(checkpointer, before=datetime.now(UTC))
    assert _seqs(store) == [1, 2, 3, 4, 5, 6]
    assert _anchor(store) is None


# -- tampering after retention -------------------------------------------------------------------


def _pruned(store: Store, checkpointer: audit.Checkpointer) -> int:
    """Twelve records, checkpoints at 5 and 10, pruned through seq 6; return the first left."""
    build(store, 12, checkpointer)
    report = _prune(checkpointer, before=_at(store, 7))
    assert report.through_seq == 6
    return 7


def test_editing_the_first_remaining_record_is_reported(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """The record right after the anchor is checked like any other."""
    first = _pruned(store, checkpointer)
    set_record(store, first, actor="user:mallory")
    report = _verify(store, checkpointer)
    assert (report.ok, report.first_bad_seq) == (False, first)


def test_replacing_the_first_remaining_record_is_reported(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """A replacement with its hash recomputed no longer links to the next record."""
    first = _pruned(store, checkpointer)
    forged = row(store, first) | {"resource": "flow:elsewhere"}
    forged_hash = audit.record_hash(**{k: v for k, v in forged.items() if k != "hash"})
    set_record(store, first, resource="flow:elsewhere", hash=forged_hash)
    report = _verify(store, checkpointer)
    assert (report.ok, report.first_bad_seq) == (False, first)


def test_relinking_the_first_remaining_record_is_reported(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """A first record that does not link to the anchor is named."""
    first = _pruned(store, checkpointer)
    set_record(store, first, prev_hash="f" * 64)
    report = _verify(store, checkpointer)
    assert (report.ok, report.first_bad_seq) == (False, first)
    assert "retention anchor" in (report.problem or "")


def test_deleting_the_first_remaining_record_is_reported(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """The first record after the anchor missing is a deletion, as at the start of a chain."""
    first = _pruned(store, checkpointer)
    delete_where(store, AuditRow.seq == first)
    report = _verify(store, checkpointer)
    assert (report.ok, report.first_bad_seq) == (False, first)
    assert "missing" in (report.problem or "")


def test_an_anchor_moved_to_hide_deleted_records_is_reported(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """Delete seq 7..9 and move the anchor to seq 9: the chain links, but no signed prune got there."""
    _pruned(store, checkpointer)
    hidden = row(store, 9)["hash"]
    delete_where(store, AuditRow.seq <= 9)
    with store.session() as session:
        session.execute(update(AuditAnchorRow).values(seq=9, hash=hidden))
    key = checkpointer.signer.public_key
    unsigned = audit.verify(store, sink=None, public_key=key)
    assert (unsigned.ok, unsigned.first_bad_seq) == (False, 1)
    report = _verify(store, checkpointer)
    assert (report.ok, report.first_bad_seq) == (False, 7)
    assert "seq 7..9 were removed, but no prune signed" in (report.problem or "")


def test_a_forged_anchor_without_a_prune_record_is_reported(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """Deleting a prefix and writing a matching anchor by hand is not a prune."""
    build(store, 12, checkpointer)
    hidden = row(store, 4)["hash"]
    delete_where(store, AuditRow.seq <= 4)
    with store.session() as session:
        session.add(AuditAnchorRow(id=1, seq=4, hash=hidden, pruned_at=datetime.now(UTC)))
    report = _verify(store, checkpointer)
    assert (report.ok, report.first_bad_seq) == (False, 1)
    assert "no prune signed with the checkpoint key" in (report.problem or "")


def test_a_deleted_anchor_is_reported(store: Store, checkpointer: audit.Checkpointer) -> None:
    """Without its anchor, a pruned chain is missing its first records."""
    _pruned(store, checkpointer)
    with store.session() as session:
        session.execute(delete(AuditAnchorRow))
    report = _verify(store, checkpointer)
    assert (report.ok, report.first_bad_seq) == (False, 1)


def test_a_rewrite_after_pruning_is_still_caught_by_the_external_checkpoint(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """Edit seq 8 and rehash on: the chain links, the signed checkpoint at 10 does not match."""
    _pruned(store, checkpointer)
    set_record(store, 8, actor="user:mallory")
    rehash_from(store, 8)
    drop_stored_checkpoints(store)
    blind = audit.verify(store, sink=None, public_key=checkpointer.signer.public_key)
    assert "rewritten" not in (blind.problem or "")  # the database alone cannot tell
    report = _verify(store, checkpointer)
    assert (report.ok, report.first_bad_seq) == (False, 7)
    assert "rewritten" in (report.problem or "")


def test_a_truncation_after_pruning_is_still_caught(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """Cut the tail below the checkpoint at seq 10: seq 9 is named."""
    _pruned(store, checkpointer)
    delete_where(store, AuditRow.seq > 8)
    drop_stored_checkpoints(store)
    report = _verify(store, checkpointer)
    assert (report.ok, report.first_bad_seq) == (False, 9)
    assert "cut off" in (report.problem or "")


# -- head truncation and holds against a database writer (ADR 0048) ------------------------------


def _forge_prune(store: Store, through: int) -> None:
    """Delete seq ..``through``, anchor there and append a plausible audit.prune, as the API could."""
    hidden = row(store, through)["hash"]
    delete_where(store, AuditRow.seq <= through)
    with store.session() as session:
        found = session.get(AuditAnchorRow, 1)
        if found is None:
            session.add(AuditAnchorRow(id=1, seq=through, hash=hidden, pruned_at=datetime.now(UTC)))
        else:
            found.seq, found.hash = through, hidden
        audit.append(
            session,
            actor="service:retention",
            action="audit.prune",
            resource="audit:records",
            folder="*",
            details={"deleted": through, "anchor_seq": through, "anchor_hash": hidden},
        )


def test_a_head_cut_with_an_anchor_and_a_prune_record_is_reported(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """Delete seq 1..8, anchor at 8, append a valid audit.prune: no signed prune covers 1..8."""
    build(store, 12, checkpointer)
    _forge_prune(store, 8)
    report = _verify(store, checkpointer)
    assert (report.ok, report.first_bad_seq, report.anchor_seq) == (False, 1, 8)
    assert "seq 1..8 were removed, but no prune signed with the checkpoint key" in (
        report.problem or ""
    )


def test_a_head_cut_after_a_real_prune_is_reported_from_the_signed_anchor(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """After retention signed a prune through seq 6, a forged one through seq 10 names seq 7."""
    _pruned(store, checkpointer)
    _forge_prune(store, 10)
    report = _verify(store, checkpointer)
    assert (report.ok, report.first_bad_seq) == (False, 7)
    assert "seq 7..10 were removed, but no prune signed" in (report.problem or "")


def test_a_signed_prune_whose_records_are_still_there_is_harmless(
    tmp_path: Path, checkpointer: audit.Checkpointer
) -> None:
    """A prune signed but never committed (its records all still there) does not fail verify."""
    original = open_store(f"sqlite:///{tmp_path / 'original.db'}")
    try:
        build(original, 9)
        copy = tmp_path / "copy.db"
        with sqlite3.connect(tmp_path / "original.db") as source, sqlite3.connect(copy) as target:
            source.backup(target)
        elsewhere = open_store(f"sqlite:///{copy}")
        try:
            done = audit.prune(
                elsewhere, before=_at(elsewhere, 6), signer=checkpointer.signer,
                sink=checkpointer.sink,
            )  # fmt: skip
        finally:
            elsewhere.dispose()
        assert done.through_seq == 5
        assert len(checkpointer.sink.statements()) == 1
        report = _verify(original, checkpointer)
        assert (report.ok, report.anchor_seq) == (True, None), report.problem
    finally:
        original.dispose()


def test_a_hold_whose_row_was_deleted_still_stops_retention(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """The signed hold statement keeps finance held after its row is gone from the database."""
    build(store, 8)
    hold = _hold(checkpointer, "finance")
    with store.session() as session:
        session.execute(delete(AuditHoldRow))
    assert audit.list_holds(store) == []
    report = _prune(checkpointer, before=datetime.now(UTC))
    assert (report.deleted, report.through_seq) == (3, 3)
    assert f"held by hold {hold}" in report.stopped_by
    assert _verify(store, checkpointer).ok


def test_a_hold_row_reused_for_another_folder_does_not_lift_the_signed_hold(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """Rewriting hold 1's row to another folder and releasing it leaves finance held."""
    build(store, 8)
    hold = _hold(checkpointer, "finance")
    with store.session() as session:
        session.execute(update(AuditHoldRow).values(folder="nowhere", released_at=utcnow()))
    report = _prune(checkpointer, before=datetime.now(UTC))
    assert report.through_seq == 3
    assert f"held by hold {hold}" in report.stopped_by


def test_a_signed_prune_that_removed_a_held_folder_fails_verification(
    store: Store, checkpointer: audit.Checkpointer, sink: audit.JsonlSink, tmp_path: Path
) -> None:
    """Even a prune the key signed fails verify when it removed a folder under a signed hold."""
    build(store, 8)
    _hold(checkpointer, "finance")
    with store.session() as session:
        session.execute(update(AuditHoldRow).values(released_at=utcnow()))
    blind = audit.JsonlSink(tmp_path / "blind.jsonl")  # a signer that never saw the hold
    report = audit.prune(store, before=_at(store, 6), signer=checkpointer.signer, sink=blind)
    assert report.through_seq == 5
    with sink.path.open("a") as out:
        out.write(blind.path.read_text())
    verified = _verify(store, checkpointer)
    assert (verified.ok, verified.first_bad_seq) == (False, 1)
    assert "removed records of folder finance while hold 1 held it" in (verified.problem or "")


def test_prune_refuses_records_that_differ_from_a_signed_checkpoint(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """A rewrite with every hash recomputed links, but retention will not sign it away."""
    build(store, 12, checkpointer)
    set_record(store, 3, actor="user:mallory")
    rehash_from(store, 3)
    with pytest.raises(AuditError, match="seq 5 differs from its signed checkpoint"):
        _prune(checkpointer, before=datetime.now(UTC))
    assert _anchor(store) is None


def test_prune_without_the_key_leaves_everything(
    store: Store, checkpointer: audit.Checkpointer, tmp_path: Path
) -> None:
    """A sink that cannot be written makes prune fail before its transaction commits."""
    build(store, 4)
    (tmp_path / "not-a-dir").write_text("")
    broken = audit.JsonlSink(tmp_path / "not-a-dir" / "sink.jsonl")
    with pytest.raises(AuditError, match="cannot write the checkpoint sink"):
        audit.prune(store, before=datetime.now(UTC), signer=checkpointer.signer, sink=broken)
    assert _seqs(store) == [1, 2, 3, 4]
    assert _anchor(store) is None


def _legacy_prune(store: Store, checkpointer: audit.Checkpointer, tmp_path: Path) -> int:
    """Prune as an install did before prunes were signed: its statement never reaches the sink."""
    lost = audit.JsonlSink(tmp_path / "lost.jsonl")
    report = audit.prune(store, before=_at(store, 6), signer=checkpointer.signer, sink=lost)
    assert report.through_seq is not None
    return report.through_seq


def test_an_unsigned_older_prune_can_be_adopted_with_the_key(
    store: Store, checkpointer: audit.Checkpointer, tmp_path: Path
) -> None:
    """Verify fails on an unsigned anchor until the key's holder adopts it, which is recorded."""
    build(store, 8, checkpointer)
    through = _legacy_prune(store, checkpointer, tmp_path)
    assert not _verify(store, checkpointer).ok
    seq = audit.adopt_anchor(
        store,
        reason="pruned by 0.4 on 2026-01-01, checked against the SIEM",
        actor=ACTOR,
        signer=checkpointer.signer,
        sink=checkpointer.sink,
    )
    adopted = row(store, seq)
    assert (adopted["action"], adopted["actor"]) == ("audit.anchor_adopt", ACTOR)
    assert adopted["details"]["anchor_seq"] == through
    report = _verify(store, checkpointer)
    assert (report.ok, report.anchor_seq) == (True, through), report.problem


def test_an_anchor_signed_prunes_reach_is_not_adopted(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """Adoption is refused where there is nothing to vouch for: no anchor, or a signed one."""
    build(store, 8, checkpointer)
    options: dict[str, Any] = {
        "reason": "r", "actor": ACTOR, "signer": checkpointer.signer, "sink": checkpointer.sink,
    }  # fmt: skip
    with pytest.raises(ConflictError, match="never pruned"):
        audit.adopt_anchor(store, **options)
    _prune(checkpointer, before=_at(store, 6))
    with pytest.raises(ConflictError, match="already lead to the anchor"):
        audit.adopt_anchor(store, **options)
