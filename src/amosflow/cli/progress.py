"""The live step table `amos run` shows while a run goes on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.table import Table

STYLE = {"completed": "green", "failed": "red", "running": "yellow", "skipped": "dim"}


def _elapsed(rec: dict[str, Any]) -> str:
    try:
        start = datetime.fromisoformat(str(rec["started_at"]))
        end = datetime.fromisoformat(str(rec["ended_at"]))
    except (KeyError, TypeError, ValueError):
        return ""
    millis = (end - start).total_seconds() * 1000
    return f"{millis:.0f} ms" if millis < 10_000 else f"{millis / 1000:.1f} s"  # noqa: PLR2004


def step_table(run_id: str, order: list[str], steps: dict[str, Any]) -> Table:
    """One row per step that has started, in document order."""
    table = Table(title=f"run {run_id}", title_justify="left")
    for column in ("step", "status", "attempt", "runs", "time"):
        table.add_column(column)
    for step_id in order:
        rec = steps.get(step_id)
        if rec is None:
            continue
        status = str(rec.get("status", ""))
        table.add_row(
            step_id,
            f"[{STYLE.get(status, 'white')}]{status}[/]",
            str(rec.get("attempt", "")),
            str(rec.get("runs", "")),
            _elapsed(rec),
        )
    return table
