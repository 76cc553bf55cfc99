"""Appending: linked, gap-free, serialised, in the caller's transaction, and fail closed."""

from __future__ import annotations

import hashlib
import threading

import pytest
from sqlalchemy import func, select, text

from amosflow import audit
from amosflow.audit._canonical import stamp
from amosflow.dsl import canonical_json
from amosflow.errors import AuditError
from amosflow.store import AuditRow, Store, count_runs, record_run
from tests.audit.chain import row
from tests.store.records import run

WRITERS = 8
EACH = 25


def test_the_first_record_links_to_genesis_and_the_next_to_it(store: Store) -> None:
    """Seq starts at 1 with 64 zeros as prev_hash; seq 2 carries seq 1's hash."""
    with store.session() as session:
        first = audit.append(session, actor="user:a", action="flows.create", resource="flow:x")
        second = audit.append(
            session, actor="user:a", action="runs.start", resource="run:1", outcome="denied"
        )
    assert (first.seq, first.prev_hash) == (1, "0" * 64)
    assert (second.seq, second.prev_hash) == (2, first.hash)


def test_the_hash_is_sha256_of_the_canonical_json_of_every_other_field(store: Store) -> None:
    """The stored hash is SHA-256 over RFC 8785 JSON of the record minus ``hash``."""
    with store.session() as session:
        record = audit.append(
            session,
            actor="user:a",
            action="secrets.read",
            resource="secret:db",
            folder="ops",
            details={"é": [1, 2.5, None, True], "b": "x"},
        )
    stored = row(store, record.seq)
    body = {k: v for k, v in stored.items() if k != "hash"} | {"at": stamp(stored["at"])}
    assert stored["hash"] == hashlib.sha256(canonical_json(body)).hexdigest()
    assert audit.AuditRecord.model_validate(stored) == record


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
    with store.session() as session:
        session.execute(text("DROP TABLE audit_records"))
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


def test_the_postgres_append_takes_the_advisory_lock(pg_store: Store) -> None:
    """On PostgreSQL the appending transaction holds the audit advisory lock until it ends."""
    with pg_store.session() as session:
        audit.append(session, actor="user:a", action="flows.create", resource="flow:x")
        held = session.scalar(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :key"),
            {"key": audit.AUDIT_LOCK_KEY},
        )
    assert held == 1
