"""Human tasks: the inbox rows that mirror waiting human steps.

Revision ID: 0007
Revises: 0006
Create Date: 2025-01-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_TS = sa.DateTime(timezone=True)
_STATUSES = "status IN ('open', 'decided', 'expired', 'cancelled')"
_KINDS = "kind IN ('approval', 'form', 'review')"


def upgrade() -> None:
    """Create ``tasks``."""
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.Column("workflow_id", sa.String(400), nullable=False),
        sa.Column("step_id", sa.String(200), nullable=False),
        sa.Column("iteration", sa.String(200), nullable=False),
        sa.Column("flow", sa.String(200), nullable=False),
        sa.Column("folder", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("assignees", _JSON, nullable=False),
        sa.Column("form", _JSON, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("claimed_by", sa.String(200), nullable=True),
        sa.Column("started_by", sa.String(200), nullable=True),
        sa.Column("escalated", sa.Boolean(), nullable=False),
        sa.Column("decision", _JSON, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("due_at", _TS, nullable=True),
        sa.Column("closed_at", _TS, nullable=True),
        sa.CheckConstraint(_STATUSES, name="ck_tasks_status"),
        sa.CheckConstraint(_KINDS, name="ck_tasks_kind"),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        sa.UniqueConstraint(
            "run_id", "step_id", "iteration", name="uq_tasks_run_id_step_id_iteration"
        ),
    )
    op.create_index("ix_tasks_status_created_at", "tasks", ["status", "created_at"])
    op.create_index("ix_tasks_folder_created_at", "tasks", ["folder", "created_at"])


def downgrade() -> None:
    """Drop ``tasks``."""
    op.drop_table("tasks")
