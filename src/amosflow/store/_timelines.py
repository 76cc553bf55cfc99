"""Each ended run's step timeline, written once with the run's end and read without Temporal."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 - Mapped[] annotations are read at run time
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from amosflow.store._tables import Base
from amosflow.store._types import JSONValue, UTCDateTime, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class RunTimelineRow(Base):
    """The per-step status, attempts and timing of one ended run, as its workflow reported it.

    A row of its own, not a column of ``runs``: run lists never carry timelines, and the end
    writes it in the same transaction as the run's status.
    """

    __tablename__ = "run_timelines"

    run_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    steps: Mapped[Any] = mapped_column(JSONValue)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


def record_timeline(session: Session, run_id: str, steps: dict[str, Any]) -> None:
    """Keep ``steps`` as the run's timeline unless it has one: the first recorded end wins."""
    dialect = session.get_bind().dialect.name
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(RunTimelineRow)
    statement = insert.values(run_id=run_id, steps=steps, recorded_at=utcnow())
    session.execute(statement.on_conflict_do_nothing(index_elements=["run_id"]))


def get_timeline(session: Session, run_id: str) -> dict[str, Any] | None:
    """The run's recorded timeline, or None while it has not ended (or ended before timelines)."""
    steps = session.scalar(select(RunTimelineRow.steps).where(RunTimelineRow.run_id == run_id))
    return steps if isinstance(steps, dict) else None
