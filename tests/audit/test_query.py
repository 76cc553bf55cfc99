"""Reading the trail: filtered newest-first pages with cursors, and JSON Lines export."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from amosflow import audit
from amosflow.dsl import canonical_json
from amosflow.errors import ValidationFailedError
from amosflow.store import Store
from tests.audit.chain import build


def test_query_lists_newest_first_and_filters_combine(store: Store) -> None:
    """Filters on actor, action and folder combine with AND; the newest record comes first."""
    build(store, 12)
    with store.session(read_only=True) as session:
        everything = audit.query(session)
        finance = audit.query(session, folder="finance", action="runs.start")
        fourth = audit.query(session, actor="user:u1", resource="flow:f4")
        nobody = audit.query(session, actor="user:u2", resource="flow:f4")
    assert [r.seq for r in everything.items] == list(range(12, 0, -1))
    assert [r.seq for r in finance.items] == [12, 8, 4]
    assert [r.seq for r in fourth.items] == [4]
    assert nobody.items == []


def test_query_pages_with_a_cursor_without_repeats_or_gaps(store: Store) -> None:
    """Walking the cursor from page to page returns every record once."""
    build(store, 12)
    seen: list[int] = []
    cursor = None
    with store.session(read_only=True) as session:
        while True:
            page = audit.query(session, limit=5, cursor=cursor)
            seen += [r.seq for r in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    assert seen == list(range(12, 0, -1))


def test_query_time_window_is_inclusive_then_exclusive(store: Store) -> None:
    """`since` keeps records at that instant, `until` drops them."""
    build(store, 3)
    with store.session(read_only=True) as session:
        second = audit.query(session).items[1]
        window = audit.query(session, since=second.at, until=second.at + timedelta(microseconds=1))
    assert [r.seq for r in window.items] == [second.seq]


@pytest.mark.parametrize(
    "bad",
    [{"cursor": "not-a-cursor"}, {"since": datetime(2025, 1, 1)}, {"limit": 0}],  # noqa: DTZ001
)
def test_query_refuses_bad_arguments(store: Store, bad: dict[str, object]) -> None:
    """A foreign cursor, a naive time or a silly limit is a validation error, not a crash."""
    with pytest.raises(ValidationFailedError), store.session(read_only=True) as session:
        audit.query(session, **bad)  # type: ignore[arg-type]


def test_export_writes_canonical_lines_anyone_can_rehash(store: Store) -> None:
    """Each exported line is RFC 8785 JSON whose other fields hash to its ``hash``, oldest first."""
    build(store, 6)
    out = io.StringIO()
    with store.session(read_only=True) as session:
        written = audit.export_jsonl(session, out, since=datetime(2000, 1, 1, tzinfo=UTC))
    lines = out.getvalue().splitlines()
    assert written == len(lines) == 6
    prev = audit.GENESIS
    for line in lines:
        record = json.loads(line)
        assert canonical_json(record).decode() == line
        claimed = record.pop("hash")
        assert hashlib.sha256(canonical_json(record)).hexdigest() == claimed
        assert record["prev_hash"] == prev
        prev = claimed


def test_export_applies_filters(store: Store) -> None:
    """Filters narrow the export the same way they narrow a query."""
    build(store, 8)
    out = io.StringIO()
    with store.session(read_only=True) as session:
        audit.export_jsonl(session, out, folder="finance")
    assert [json.loads(line)["seq"] for line in out.getvalue().splitlines()] == [4, 8]
