"""Retention: prune a prefix of the chain up to any legal hold; verify from the anchor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from amosflow import audit
from amosflow.errors import AuditError, ConflictError, NotFoundError, ValidationFailedError
from amosflow.store import Store
from amosflow.store.tables import AuditAnchorRow, AuditRow
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


def _verify(store: Store, checkpointer: audit.Checkpointer | None = None) -> audit.VerifyReport:
    if checkpointer is None:
        return audit.verify(store, sink=None, public_key=None)
    return audit.verify(store, sink=checkpointer.sink, public_key=checkpointer.signer.public_key)


def test_prune_removes_the_oldest_records_and_verify_starts_at_the_anchor(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """Records older than the cut-off go; the anchor is the last one's seq and hash; verify ok."""
    build(store, 12, checkpointer)
    before = _at(store, 8)
    through = _older_than(store, before)
    last_removed = row(store, through)["hash"]
    report = audit.prune(store, before=before)
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
    audit.prune(store, before=_at(store, 7))
    assert [c.seq for c in checkpointer.sink.read()] == [5, 10]
    report = _verify(store, checkpointer)
    assert (report.ok, report.last_checkpoint_seq) == (True, 10)


def test_appends_after_pruning_everything_continue_the_chain(
    store: Store, checkpointer: audit.Checkpointer
) -> None:
    """With every record removed, the prune record and later ones link on from the anchor."""
    build(store, 4, checkpointer)
    report = audit.prune(store, before=datetime.now(UTC))
    assert (report.deleted, report.anchor_seq, report.record_seq) == (4, 4, 5)
    build(store, 2, checkpointer)
    checkpointer.checkpoint()
    second = audit.prune(store, before=_at(store, 6) + timedelta(microseconds=1))
    assert (second.first_seq, second.through_seq, second.record_seq) == (5, 6, 8)
    assert _seqs(store) == [7, 8]
    report_after = _verify(store, checkpointer)
    assert report_after.ok, report_after.problem
    assert report_after.anchor_seq == 6


def test_nothing_to_prune_still_leaves_an_audit_record(store: Store) -> None:
    """A prune that removes nothing says why, and is recorded like any other."""
    build(store, 3)
    report = audit.prune(store, before=_at(store, 1))
    assert (report.deleted, report.anchor_seq) == (0, None)
    assert "not older than the cut-off" in report.stopped_by
    assert row(store, 4)["action"] == "audit.prune"
    assert _verify(store).ok


def test_a_hold_on_a_folder_stops_pruning_at_its_first_record(store: Store) -> None:
    """Seq 4 is in folder finance: with finance held, only seq 1..3 go, the rest stays."""
    build(store, 8)
    hold = audit.place_hold(store, folder="finance", reason="case 42", actor=ACTOR)
    report = audit.prune(store, before=datetime.now(UTC))
    assert (report.deleted, report.through_seq) == (3, 3)
    assert f"held by hold {hold}" in report.stopped_by
    assert _seqs(store)[0] == 4
    assert _verify(store).ok


def test_a_hold_on_every_folder_stops_everything_until_released(store: Store) -> None:
    """A `*` hold keeps every record; once released, pruning proceeds; both are audited."""
    build(store, 5)
    hold = audit.place_hold(store, folder="*", reason="litigation", actor=ACTOR)
    assert audit.prune(store, before=datetime.now(UTC)).deleted == 0
    assert _seqs(store)[0] == 1
    assert [h.id for h in audit.list_holds(store)] == [hold]
    released = audit.release_hold(store, hold, actor=ACTOR)
    assert not released.active
    assert audit.list_holds(store) == []
    assert [h.id for h in audit.list_holds(store, include_released=True)] == [hold]
    report = audit.prune(store, before=datetime.now(UTC))
    assert report.deleted == 8  # five records, the hold, the first prune, the release
    assert _verify(store).ok


def test_placing_and_releasing_a_hold_is_audited(store: Store) -> None:
    """Each hold change is a record naming the actor, the hold and its folder."""
    hold = audit.place_hold(store, folder="finance", reason="case 42", actor=ACTOR)
    audit.release_hold(store, hold, actor="user:boss")
    placed, released = row(store, 1), row(store, 2)
    assert (placed["action"], placed["actor"], placed["folder"]) == (
        "audit_holds.place", ACTOR, "finance",
    )  # fmt: skip
    assert placed["resource"] == released["resource"] == f"audit_hold:{hold}"
    assert placed["details"] == {"hold_id": hold, "reason": "case 42"}
    assert (released["action"], released["actor"]) == ("audit_holds.release", "user:boss")


def test_hold_mistakes_are_refused(store: Store) -> None:
    """An unknown or already released hold, or an empty reason, is an error, not a no-op."""
    with pytest.raises(NotFoundError):
        audit.release_hold(store, 99, actor=ACTOR)
    hold = audit.place_hold(store, folder="finance", reason="case", actor=ACTOR)
    audit.release_hold(store, hold, actor=ACTOR)
    with pytest.raises(ConflictError):
        audit.release_hold(store, hold, actor=ACTOR)
    with pytest.raises(ValidationFailedError):
        audit.place_hold(store, folder="finance", reason=" ", actor=ACTOR)


def test_prune_keeps_records_not_yet_shipped(store: Store) -> None:
    """``max_seq`` (the SIEM cursor) caps what may go, however old the rest is."""
    build(store, 6)
    report = audit.prune(store, before=datetime.now(UTC), max_seq=2)
    assert report.through_seq == 2
    assert "not been shipped" in report.stopped_by


def test_prune_refuses_bad_cut_offs(store: Store) -> None:
    """A naive time or one in the future is refused before anything is touched."""
    build(store, 2)
    with pytest.raises(ValidationFailedError):
        audit.prune(store, before=datetime(2020, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValidationFailedError):
        audit.prune(store, before=datetime.now(UTC) + timedelta(days=1))
    assert _seqs(store) == [1, 2]


def test_prune_refuses_to_remove_tampered_records(store: Store) -> None:
    """An edited record inside the range would be laundered by removing it: prune refuses."""
    build(store, 6)
    set_record(store, 3, actor="user:mallory")
    with pytest.raises(AuditError, match="refusing to prune: seq 3"):
        audit.prune(store, before=datetime.now(UTC))
    assert _seqs(store) == [1, 2, 3, 4, 5, 6]
    assert _anchor(store) is None


# -- tampering after retention -------------------------------------------------------------------


def _pruned(store: Store, checkpointer: audit.Checkpointer) -> int:
    """Twelve records, checkpoints at 5 and 10, pruned through seq 6; return the first left."""
    build(store, 12, checkpointer)
    report = audit.prune(store, before=_at(store, 7))
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
    """Delete seq 7..9 and move the anchor to seq 9: the chain links, the prune record does not."""
    _pruned(store, checkpointer)
    hidden = row(store, 9)["hash"]
    delete_where(store, AuditRow.seq <= 9)
    with store.session() as session:
        session.execute(update(AuditAnchorRow).values(seq=9, hash=hidden))
    key = checkpointer.signer.public_key
    assert audit.verify(store, sink=None, public_key=key).first_bad_seq == 7
    report = _verify(store, checkpointer)
    assert (report.ok, report.first_bad_seq) == (False, 7)
    assert "audit.prune" in (report.problem or "")


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
    assert "no audit.prune record" in (report.problem or "")


def test_a_deleted_anchor_is_reported(store: Store, checkpointer: audit.Checkpointer) -> None:
    """Without its anchor, a pruned chain is missing its first records."""
    _pruned(store, checkpointer)
    with store.session() as session:
        session.execute(AuditAnchorRow.__table__.delete())
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
    assert audit.verify(store, sink=None, public_key=checkpointer.signer.public_key).ok
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
