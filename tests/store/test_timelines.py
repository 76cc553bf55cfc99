"""Run timelines: written once with the run's end, read back as written."""

from __future__ import annotations

from amosflow.store import Store, record_run
from amosflow.store import runs as run_store
from tests.store.records import run

STEPS = {
    "a": {"status": "completed", "runs": 1, "attempt": 1, "error": None},
    "b": {"status": "failed", "runs": 2, "error": {"message": "no", "type": "X", "step": "b"}},
}


def test_a_timeline_reads_back_as_written(store: Store) -> None:
    """Every step's record, nested errors included, survives the round trip."""
    with store.session() as session:
        record_run(session, run("r1"))
        run_store.record_timeline(session, "r1", STEPS)
    with store.session(read_only=True) as session:
        assert run_store.get_timeline(session, "r1") == STEPS


def test_the_first_recorded_timeline_wins(store: Store) -> None:
    """A repeated end (another process, a resumed watcher) leaves the first timeline alone."""
    with store.session() as session:
        record_run(session, run("r1"))
        run_store.record_timeline(session, "r1", STEPS)
    with store.session() as session:
        run_store.record_timeline(session, "r1", {"other": {"status": "completed"}})
    with store.session(read_only=True) as session:
        assert run_store.get_timeline(session, "r1") == STEPS


def test_a_run_without_a_recorded_end_has_no_timeline(store: Store) -> None:
    """A run still going (or ended before timelines were kept) has none."""
    with store.session() as session:
        record_run(session, run("r1"))
    with store.session(read_only=True) as session:
        assert run_store.get_timeline(session, "r1") is None
