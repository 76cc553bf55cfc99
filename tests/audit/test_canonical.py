"""The fast canonical encoder produces exactly the bytes of the RFC 8785 reference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from amosflow.audit._canonical import record_bytes, stamp

_safe_ints = st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
_json = st.recursive(
    st.none() | st.booleans() | _safe_ints | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)  # fmt: skip


@given(
    details=st.dictionaries(st.text(max_size=6), _json, max_size=5),
    actor=st.text(),
    resource=st.text(),
    seq=st.integers(min_value=1, max_value=2**53 - 1),
)
def test_record_bytes_match_the_reference_encoder(
    details: dict[str, Any], actor: str, resource: str, seq: int
) -> None:
    """For any JSON details and any strings, the fast path equals ``rfc8785.dumps``."""
    at = datetime(2025, 3, 1, 12, 0, 0, 1234, tzinfo=UTC)
    fields: dict[str, Any] = {
        "seq": seq, "at": at, "actor": actor, "action": "flows.create", "resource": resource,
        "folder": "default", "outcome": "ok", "details": details, "prev_hash": "0" * 64,
    }  # fmt: skip
    assert record_bytes(**fields) == rfc8785.dumps(fields | {"at": stamp(at)})


def test_stamp_is_utc_with_microseconds_whatever_the_offset() -> None:
    """The same instant renders the same text from any offset, always with six digits."""
    local = datetime(2025, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    assert stamp(local) == "2025-03-01T12:00:00.000000Z"
