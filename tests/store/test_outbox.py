"""The transactional outbox: enqueue with the change, claim, mark, and disjoint claims."""

from __future__ import annotations

import pytest

from amosflow.store import (
    Store,
    claim_pending,
    enqueue,
    mark_failed,
    mark_published,
    outbox,
    record_run,
)
from tests.store.records import run


def _event(n: int) -> dict[str, object]:
    return {"specversion": "1.0", "id": f"e{n}", "type": "io.amosflow.test", "data": {"n": n}}


def test_an_event_commits_or_rolls_back_with_its_state_change(store: Store) -> None:
    """An event enqueued in a failed transaction disappears together with the change."""

    def announce_then_fail() -> None:
        with store.session() as session:
            record_run(session, run("r1"))
            enqueue(session, "amos.run.r1", _event(1))
            raise RuntimeError

    with pytest.raises(RuntimeError):
        announce_then_fail()
    with store.session() as session:
        record_run(session, run("r2"))
        enqueue(session, "amos.run.r2", _event(2))
    with store.session() as session:
        assert [row.event for row in claim_pending(session, 10)] == [_event(2)]


def test_claim_mark_published_cycle(store: Store) -> None:
    """Claimed events come oldest first; published ones are never claimed again."""
    with store.session() as session:
        ids = [enqueue(session, f"amos.s{n}", _event(n)) for n in range(3)]
    with store.session() as session:
        claimed = claim_pending(session, 2)
        assert [row.id for row in claimed] == ids[:2]
        assert [row.subject for row in claimed] == ["amos.s0", "amos.s1"]
        assert mark_published(session, [row.id for row in claimed]) == 2
    with store.session() as session:
        assert [row.id for row in claim_pending(session, 10)] == ids[2:]
        mark_published(session, ids[2:])
    with store.session() as session:
        assert claim_pending(session, 10) == []


def test_events_queued_together_are_claimed_in_the_order_given(store: Store) -> None:
    """A batch (a run's end with its step events) keeps its order, after what came before."""
    with store.session() as session:
        enqueue(session, "amos.first", _event(0))
        outbox.enqueue_many(session, [(f"amos.s{n}", _event(n)) for n in range(1, 30)])
        outbox.enqueue_many(session, [])
    with store.session() as session:
        claimed = claim_pending(session, 100)
    assert [row.subject for row in claimed] == ["amos.first"] + [f"amos.s{n}" for n in range(1, 30)]
    assert [row.event for row in claimed[1:]] == [_event(n) for n in range(1, 30)]


def test_a_failed_publication_is_counted_and_retried(store: Store) -> None:
    """mark_failed keeps the event pending, counts the attempt and keeps the reason."""
    with store.session() as session:
        event_id = enqueue(session, "amos.s", _event(1))
    with store.session() as session:
        mark_failed(session, event_id, "nats: timeout")
    with store.session() as session:
        mark_failed(session, event_id, "nats: no responders" + "!" * 5000)
    with store.session() as session:
        (row,) = claim_pending(session, 10)
    assert row.attempts == 2
    assert row.last_error is not None
    assert row.last_error.startswith("nats: no responders")
    assert len(row.last_error) == 2000
    assert row.published_at is None


def test_concurrent_relays_claim_disjoint_rows_on_postgresql(pg_store: Store) -> None:
    """FOR UPDATE SKIP LOCKED: a second relay skips the rows the first holds, without waiting."""
    with pg_store.session() as session:
        ids = [enqueue(session, "amos.s", _event(n)) for n in range(4)]
    with pg_store.session() as first, pg_store.session() as second:
        mine = [row.id for row in claim_pending(first, 2)]
        theirs = [row.id for row in claim_pending(second, 10)]
        mark_published(first, mine)
        mark_published(second, theirs)
    assert mine == ids[:2]
    assert theirs == ids[2:]
