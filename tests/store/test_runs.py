"""The run index: idempotent records, status changes, lookups."""

from __future__ import annotations

import threading
from datetime import timedelta, timezone

import pytest
from sqlalchemy import func, select

from amosflow.errors import NotFoundError, ValidationFailedError
from amosflow.store import RunRow, Store, get_run, record_run, set_status
from tests.store.records import T0, run


def _count(store: Store) -> int:
    with store.session(read_only=True) as session:
        return int(session.scalar(select(func.count()).select_from(RunRow)) or 0)


def test_a_recorded_run_reads_back_equal(store: Store) -> None:
    """Every field, JSON values and aware timestamps included, survives the round trip."""
    record = run(
        "r1", inputs={"amount": 12.5, "lines": [1, 2]}, trigger="webhook", trigger_ref="d-1"
    )
    with store.session() as session:
        assert record_run(session, record) == record
    with store.session() as session:
        assert get_run(session, "r1") == record


def test_recording_the_same_run_id_again_returns_the_first_row(store: Store) -> None:
    """A repeated insert is a no-op that hands back the row already stored."""
    with store.session() as session:
        first = record_run(session, run("r1", inputs={"n": 1}))
    with store.session() as session:
        again = record_run(session, run("r1", minutes=5, inputs={"n": 2}))
    assert again == first
    assert _count(store) == 1


def test_concurrent_inserts_of_one_run_id_leave_one_row(store: Store) -> None:
    """Two threads racing to record the same run both get the same single row."""
    barrier = threading.Barrier(2)
    results: list[object] = []

    def insert(minutes: int) -> None:
        barrier.wait()
        with store.session() as session:
            results.append(record_run(session, run("same", minutes=minutes)))

    threads = [threading.Thread(target=insert, args=(m,)) for m in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2
    assert results[0] == results[1]
    assert _count(store) == 1


def test_non_utc_timestamps_are_stored_as_utc(store: Store) -> None:
    """A timestamp given in another zone reads back as the same instant in UTC."""
    local = T0.astimezone(timezone(timedelta(hours=5, minutes=30)))
    with store.session() as session:
        stored = record_run(session, run("r1", created_at=local))
    assert stored.created_at == T0
    assert stored.created_at.utcoffset() == timedelta(0)


def test_get_run_of_an_unknown_id_raises_not_found(store: Store) -> None:
    """Looking up a run that does not exist is a NotFoundError naming it."""
    with store.session() as session, pytest.raises(NotFoundError, match="nope"):
        get_run(session, "nope")


def test_set_status_stamps_start_and_end_and_keeps_the_outcome(store: Store) -> None:
    """Running sets started_at; a terminal status sets ended_at, output and error."""
    with store.session() as session:
        record_run(session, run("r1"))
        running = set_status(session, "r1", "running")
        ended_at = T0 + timedelta(hours=1)
        done = set_status(session, "r1", "failed", error={"type": "Boom"}, ended_at=ended_at)
    assert running.started_at is not None
    assert running.ended_at is None
    assert (done.status, done.ended_at, done.error) == ("failed", ended_at, {"type": "Boom"})
    with store.session() as session:
        assert get_run(session, "r1") == done


def test_a_terminal_status_is_final(store: Store) -> None:
    """Late reports (running after completed, another ending) do not rewrite a finished run."""
    with store.session() as session:
        record_run(session, run("r1"))
        done = set_status(session, "r1", "completed", output={"ok": True})
        assert set_status(session, "r1", "running") == done
        assert set_status(session, "r1", "failed", error={"x": 1}) == done
        assert get_run(session, "r1") == done


def test_set_status_of_an_unknown_run_raises_not_found(store: Store) -> None:
    """Changing the status of a run that does not exist is a NotFoundError."""
    with store.session() as session, pytest.raises(NotFoundError):
        set_status(session, "ghost", "running")


def test_set_status_refuses_an_unknown_status(store: Store) -> None:
    """A status outside the closed list is a validation error, not a database error."""
    with store.session() as session:
        record_run(session, run("r1"))
        with pytest.raises(ValidationFailedError) as caught:
            set_status(session, "r1", "exploded")
    assert caught.value.diagnostics[0].pointer == "/status"


def test_a_failing_session_rolls_back(store: Store) -> None:
    """An error inside ``session()`` discards everything written in it."""

    def record_then_fail() -> None:
        with store.session() as session:
            record_run(session, run("r1"))
            raise RuntimeError

    with pytest.raises(RuntimeError):
        record_then_fail()
    assert _count(store) == 0
