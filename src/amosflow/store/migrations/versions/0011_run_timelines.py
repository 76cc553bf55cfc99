"""Each ended run's step timeline, recorded with its end.

Revision ID: 0011
Revises: 0010
Create Date: 2025-01-11

The run's end and its timeline are written in one transaction from the workflow's completion,
so reading a finished run needs no Temporal query (decision 0056). Runs that ended before
have no row; their timeline is read from Temporal as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Create ``run_timelines``."""
    op.create_table(
        "run_timelines",
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.Column("steps", _JSON, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_run_timelines")),
    )


def downgrade() -> None:
    """Drop ``run_timelines``."""
    op.drop_table("run_timelines")
