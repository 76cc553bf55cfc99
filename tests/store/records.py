"""Builders for store test data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from amosflow.store import RunRecord

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def run(run_id: str, *, minutes: int = 0, **fields: Any) -> RunRecord:
    """A valid run record created ``minutes`` after T0."""
    values: dict[str, Any] = {
        "run_id": run_id,
        "flow_name": "invoice",
        "flow_hash": "sha256:" + "0" * 64,
        "config_hash": "c" * 64,
        "created_at": T0 + timedelta(minutes=minutes),
    }
    return RunRecord(**(values | fields))
