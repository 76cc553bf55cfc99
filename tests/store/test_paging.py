"""Listing runs: filters, and cursor paging that walks every row exactly once in order."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from amosflow.errors import ValidationFailedError
from amosflow.store import RunRecord, RunRow, Store, list_runs, record_run, set_status
from tests.store.records import T0, run


def _walk(store: Store, limit: int, **filters: object) -> list[RunRecord]:
    seen: list[RunRecord] = []
    cursor: str | None = None
    with store.session(read_only=True) as session:
        while True:
            page = list_runs(session, cursor=cursor, limit=limit, **filters)  # type: ignore[arg-type]
            assert len(page.items) <= limit
            seen += page.items
            if page.next_cursor is None:
                return seen
            cursor = page.next_cursor


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    minutes=st.lists(st.integers(min_value=0, max_value=5), max_size=30),
    limit=st.integers(min_value=1, max_value=7),
)
def test_paging_walks_every_run_once_newest_first(
    store: Store, minutes: list[int], limit: int
) -> None:
    """Pages joined together are all runs, each once, ordered by (created_at, run_id) desc."""
    with store.session() as session:
        session.execute(delete(RunRow))
        for index, minute in enumerate(minutes):
            record_run(session, run(f"r{index:03d}", minutes=minute))
    walked = _walk(store, limit)
    keys = [(r.created_at, r.run_id) for r in walked]
    assert keys == sorted(keys, reverse=True)
    assert len(keys) == len(set(keys)) == len(minutes)


def test_paging_is_stable_while_newer_runs_arrive(store: Store) -> None:
    """A run created after the first page neither shifts nor repeats the later pages."""
    with store.session() as session:
        for index in range(5):
            record_run(session, run(f"r{index}", minutes=index))
    with store.session(read_only=True) as session:
        first = list_runs(session, limit=2)
    with store.session() as session:
        record_run(session, run("newest", minutes=60))
    with store.session(read_only=True) as session:
        rest = list_runs(session, cursor=first.next_cursor, limit=10)
    assert [r.run_id for r in first.items + rest.items] == ["r4", "r3", "r2", "r1", "r0"]


def test_filters_by_flow_status_and_time(store: Store) -> None:
    """flow, status, since (inclusive) and until (exclusive) each narrow the list."""
    with store.session() as session:
        record_run(session, run("a0", minutes=0, flow_name="a"))
        record_run(session, run("a1", minutes=1, flow_name="a"))
        record_run(session, run("b2", minutes=2, flow_name="b"))
        record_run(session, run("a3", minutes=3, flow_name="a"))
        set_status(session, "a1", "completed")
    with store.session(read_only=True) as session:

        def ids(**filters: object) -> list[str]:
            page = list_runs(session, **filters)  # type: ignore[arg-type]
            return [r.run_id for r in page.items]

        assert ids(flow="a") == ["a3", "a1", "a0"]
        assert ids(status="completed") == ["a1"]
        assert ids(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)) == ["b2", "a1"]
        assert ids(flow="a", status="pending", since=T0 + timedelta(minutes=1)) == ["a3"]


def test_filtered_paging_walks_only_matching_runs(store: Store) -> None:
    """A cursor keeps the filter's rows in order across pages."""
    with store.session() as session:
        for index in range(9):
            record_run(session, run(f"r{index}", minutes=index, flow_name="ab"[index % 2]))
    assert [r.run_id for r in _walk(store, 2, flow="a")] == ["r8", "r6", "r4", "r2", "r0"]


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64!",
        base64.urlsafe_b64encode(b"{}").decode(),
        base64.urlsafe_b64encode(b'["yesterday","r1"]').decode(),
        base64.urlsafe_b64encode(b'["2025-01-01T00:00:00","r1"]').decode(),
        base64.urlsafe_b64encode(b'["2025-01-01T00:00:00+00:00",7]').decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "",
    ],
)
def test_a_bad_cursor_is_a_validation_error(store: Store, cursor: str) -> None:
    """A cursor the server did not issue is a ValidationFailedError at /cursor, not a crash."""
    with store.session(read_only=True) as session, pytest.raises(ValidationFailedError) as caught:
        list_runs(session, cursor=cursor)
    assert caught.value.diagnostics[0].pointer == "/cursor"


@pytest.mark.parametrize("limit", [0, -1, 501])
def test_a_bad_limit_is_a_validation_error(store: Store, limit: int) -> None:
    """A page size outside 1..500 is refused."""
    with store.session(read_only=True) as session, pytest.raises(ValidationFailedError):
        list_runs(session, limit=limit)


def test_an_unknown_status_filter_is_a_validation_error(store: Store) -> None:
    """Filtering by a status that does not exist is refused, not silently empty."""
    with store.session(read_only=True) as session, pytest.raises(ValidationFailedError):
        list_runs(session, status="sleeping")


def test_a_time_filter_without_a_zone_is_a_validation_error(store: Store) -> None:
    """A naive since/until is ambiguous, so it is refused rather than guessed."""
    with store.session(read_only=True) as session, pytest.raises(ValidationFailedError) as caught:
        list_runs(session, since=T0.replace(tzinfo=None))
    assert caught.value.diagnostics[0].pointer == "/since"
