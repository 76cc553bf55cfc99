"""Appending: linked, gap-free, serialised, in the caller's transaction, and fail closed."""

from __future__ import annotations

import hashlib
import threading

import pytest
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import Session

from amosflow import audit
from amosflow.audit import _chainer
from amosflow.audit._canonical import stamp
from amosflow.dsl import canonical_json
from amosflow.errors import AuditError
from amosflow.store import AuditPendingRow, AuditRow, Store, count_runs, record_run
from amosflow.store._types import utcnow
from tests.audit.chain import row
from tests.store.records import run

WRITERS = 8
EACH = 25


def test_the_first_record_links_to_genesis_and_the_next_to_it(store: Store) -> None:
    """Seq starts at 1 with 64 zeros as prev_hash; seq 2 carries seq 1's hash."""
    with store.session() as session:
        audit.append(session, actor="user:a", action="flows.create", resource="flow:x")
        audit.append(
            session, actor="user:a", action="runs.start", resource="run:1", outcome="denied"
        )
    first, second = row(store, 1), row(store, 2)
    assert (first["action"], first["prev_hash"]) == ("flows.create", "0" * 64)
    assert (second["action"], second["prev_hash"]) == ("runs.start", first["hash"])


def test_the_hash_is_sha256_of_the_canonical_json_of_every_other_field(store: Store) -> None:
    """The stored hash is SHA-256 over RFC 8785 JSON of the record minus ``hash``."""
    details = {"é": [1, 2.5, None, True], "b": "x"}
    with store.session() as session:
        appended = audit.append(
            session,
            actor="user:a",
            action="secrets.read",
            resource="secret:db",
            folder="ops",
            details=details,
        )
    stored = row(store, 1)
    body = {k: v for k, v in stored.items() if k != "hash"} | {"at": stamp(stored["at"])}
    assert stored["hash"] == hashlib.sha256(canonical_json(body)).hexdigest()
    record = audit.AuditRecord.model_validate(stored)
    assert (record.at, record.folder, record.details) == (appended.at, "ops", details)


def _start_run(store: Store, *, then_fail: bool = False) -> None:
    """Record a run and its audit record in one transaction, optionally failing afterwards."""
    with store.session() as session:
        record_run(session, run("r1"))
        audit.append(session, actor="user:a", action="runs.start", resource="run:r1")
        if then_fail:
            raise RuntimeError


def _count_rows(store: Store) -> tuple[int, int]:
    with store.session(read_only=True) as session:
        records = session.scalar(select(func.count()).select_from(AuditRow))
        return count_runs(session), int(records or 0)


def test_a_record_rolls_back_with_the_change_it_records(store: Store) -> None:
    """When the caller's transaction fails after the append, neither the change nor its record stays."""
    with pytest.raises(RuntimeError):
        _start_run(store, then_fail=True)
    assert _count_rows(store) == (0, 0)


def test_append_fails_closed_when_the_audit_table_cannot_be_written(store: Store) -> None:
    """A database failure raises AuditError, so the change being recorded is rolled back too."""
    # The table the appender writes: the chain on SQLite, the pending records on PostgreSQL.
    table = "audit_records" if store.dialect == "sqlite" else "audit_pending"
    with store.session() as session:
        session.execute(text(f"DROP TABLE {table}"))
    with pytest.raises(AuditError, match="cannot write the audit record"):
        _start_run(store)
    with store.session(read_only=True) as session:
        assert count_runs(session) == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"action": "create"}, "resource.verb"),
        ({"action": "Flows.Create"}, "resource.verb"),
        ({"outcome": "maybe"}, "outcome"),
        ({"details": {"when": object()}}, "cannot build"),
        ({"details": {"big": float("nan")}}, "cannot build"),
        ({"actor": "x" * 201}, "cannot build"),
    ],
)
def test_append_refuses_a_malformed_record_with_audit_error(
    store: Store, fields: dict[str, object], message: str
) -> None:
    """A bad action, outcome, field length or non-JSON detail raises AuditError, writing nothing."""
    values: dict[str, object] = {"actor": "user:a", "action": "flows.create", "resource": "f"}
    with pytest.raises(AuditError, match=message), store.session() as session:
        audit.append(session, **(values | fields))  # type: ignore[arg-type]


def test_concurrent_appends_from_eight_threads_make_one_gap_free_valid_chain(
    store: Store,
) -> None:
    """Eight writers appending in their own transactions leave seq 1..200 linked and valid."""
    barrier = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        barrier.wait()
        try:
            for n in range(EACH):
                with store.session() as session:
                    audit.append(
                        session, actor=f"user:w{writer}", action="runs.start", resource=f"run:{n}"
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with store.session(read_only=True) as session:
        seqs = list(session.scalars(select(AuditRow.seq).order_by(AuditRow.seq)))
    assert seqs == list(range(1, WRITERS * EACH + 1))
    report = audit.verify(store, sink=None, public_key=None)
    assert (report.ok, report.checked) == (True, WRITERS * EACH)


def test_awkward_json_details_survive_the_round_trip_and_verify(store: Store) -> None:
    """Floats, integral floats past 2**53, unicode keys and nesting hash the same when read back."""
    details = {
        "ratio": 0.1,
        "big": 1e20,
        "tiny": 5e-324,
        "neg": -0.0,
        "ünï": {"😀": ["\u2028", "\x1f", 'q"\\']},
        "safe": 2**53 - 1,
    }
    with store.session() as session:
        audit.append(
            session, actor="user:a", action="configs.update", resource="c", details=details
        )
    assert audit.verify(store, sink=None, public_key=None).ok


def _held_chain_locks(session: Session) -> int:
    return int(
        session.scalar(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :key"),
            {"key": audit.AUDIT_LOCK_KEY},
        )
        or 0
    )


def test_a_postgres_append_takes_no_lock_and_is_linked_once_its_transaction_commits(
    pg_store: Store,
) -> None:
    """On PostgreSQL the record waits unlocked in audit_pending and is chained by the commit."""
    with pg_store.session() as session:
        pending = audit.append(session, actor="user:a", action="flows.create", resource="flow:x")
        assert isinstance(pending, audit.PendingRecord)
        assert _held_chain_locks(session) == 0
        assert session.scalar(select(func.count()).select_from(AuditPendingRow)) == 1
        assert session.scalar(select(func.count()).select_from(AuditRow)) == 0
    assert row(pg_store, 1)["resource"] == "flow:x"
    report = audit.verify(pg_store, sink=None, public_key=None)
    assert (report.ok, report.checked, report.unlinked) == (True, 1, 0)


def test_a_record_appended_in_a_savepoint_is_linked_when_the_outer_transaction_commits(
    pg_store: Store,
) -> None:
    """A savepoint's release is not the commit: linking waits for the outer transaction.

    Runner enrollment appends inside ``begin_nested``; linking at the savepoint's release ran
    before the record was visible and left it pending until some later append.
    """
    with pg_store.session() as session:
        with session.begin_nested():
            audit.append(session, actor="user:a", action="runners.enroll", resource="runner:r")
        rolled_back = session.begin_nested()
        audit.append(session, actor="user:a", action="flows.create", resource="flow:gone")
        rolled_back.rollback()
    assert row(pg_store, 1)["resource"] == "runner:r"
    report = audit.verify(pg_store, sink=None, public_key=None)
    assert (report.ok, report.checked, report.unlinked) == (True, 1, 0)


def _commit_unlinked(store: Store, resource: str) -> None:
    """Commit a pending record without its linking pass, as an appender killed after commit."""
    with store.engine.begin() as conn:
        conn.execute(
            insert(AuditPendingRow),
            {
                "at": utcnow(), "actor": "user:gone", "action": "flows.delete",
                "resource": resource, "folder": "default", "outcome": "ok", "details": {"n": 1},
            },
        )  # fmt: skip


def test_verify_reports_a_committed_record_left_unlinked_and_the_next_append_links_it(
    pg_store: Store,
) -> None:
    """A record whose appender died after commit is counted as unlinked, then chained first."""
    _commit_unlinked(pg_store, "flow:orphan")
    report = audit.verify(pg_store, sink=None, public_key=None)
    assert (report.ok, report.checked, report.unlinked) == (True, 0, 1)
    with pg_store.session() as session:
        audit.append(session, actor="user:a", action="flows.create", resource="flow:next")
    assert [row(pg_store, seq)["resource"] for seq in (1, 2)] == ["flow:orphan", "flow:next"]
    report = audit.verify(pg_store, sink=None, public_key=None)
    assert (report.ok, report.checked, report.unlinked) == (True, 2, 0)


def test_the_checkpointer_links_committed_records_before_it_signs(
    pg_store: Store, signer: audit.CheckpointSigner, sink: audit.JsonlSink
) -> None:
    """A checkpoint covers a record left unlinked by a crash: the checkpointer links it first."""
    _commit_unlinked(pg_store, "flow:orphan")
    written = audit.Checkpointer(pg_store, signer, sink).checkpoint()
    assert written is not None
    assert (written.seq, written.hash) == (1, row(pg_store, 1)["hash"])


def test_a_chain_that_cannot_be_linked_keeps_committed_records_pending_until_it_can(
    pg_store: Store,
) -> None:
    """A failing linking pass never undoes a committed change; the next pass links its record."""
    with pg_store.session() as session:
        session.execute(text("ALTER TABLE audit_records RENAME TO audit_records_away"))
    try:
        _start_run(pg_store)
        with pg_store.session(read_only=True) as session:
            assert count_runs(session) == 1
            assert session.scalar(select(func.count()).select_from(AuditPendingRow)) == 1
    finally:
        with pg_store.session() as session:
            session.execute(text("ALTER TABLE audit_records_away RENAME TO audit_records"))
    with pg_store.session() as session:
        audit.append(session, actor="user:a", action="flows.create", resource="flow:next")
    assert [row(pg_store, seq)["resource"] for seq in (1, 2)] == ["run:r1", "flow:next"]
    assert audit.verify(pg_store, sink=None, public_key=None).ok


def _pending_count(store: Store) -> int:
    with store.session(read_only=True) as session:
        return int(session.scalar(select(func.count()).select_from(AuditPendingRow)) or 0)


def test_committers_waiting_on_the_chain_share_one_linking_pass(
    pg_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four commits made while the chain is locked are linked by the first pass that runs."""
    linked: list[int] = []
    link = _chainer.link_pending

    def counted(engine: Engine) -> int:
        done = link(engine)
        linked.append(done)
        return done

    monkeypatch.setattr(_chainer, "link_pending", counted)
    writers = [threading.Thread(target=_append_one, args=(pg_store, f"run:{n}")) for n in range(4)]
    with pg_store.engine.begin() as holder:
        holder.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": audit.AUDIT_LOCK_KEY})
        for writer in writers:
            writer.start()
        waited = threading.Event()
        for _ in range(2000):  # the commits are not ours to signal; give them up to 10 s
            if _pending_count(pg_store) == len(writers):
                break
            waited.wait(0.005)
        assert _pending_count(pg_store) == len(writers)
    for writer in writers:
        writer.join()
    assert linked[0] == len(writers)
    assert sum(linked) == len(writers)
    assert audit.verify(pg_store, sink=None, public_key=None).checked == len(writers)


def _append_one(store: Store, resource: str) -> None:
    with store.session() as session:
        audit.append(session, actor="user:a", action="runs.start", resource=resource)
