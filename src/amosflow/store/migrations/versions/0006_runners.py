"""Runners: the fleet registry, one-time enrollment tokens, and the leased job queue.

Revision ID: 0006
Revises: 0005
Create Date: 2025-01-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_TS = sa.DateTime(timezone=True)
_STATUSES = "status IN ('active', 'draining', 'revoked')"
_STATES = "state IN ('queued', 'leased', 'completed', 'failed')"


def upgrade() -> None:
    """Create ``runners``, ``enrollment_tokens`` and ``runner_jobs``."""
    op.create_table(
        "runners",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("zone", sa.String(100), nullable=False),
        sa.Column("capabilities", _JSON, nullable=False),
        sa.Column("cert_serial", sa.String(64), nullable=False),
        sa.Column("cert_not_after", _TS, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_heartbeat_at", _TS, nullable=True),
        sa.Column("load", sa.Integer(), nullable=False),
        sa.Column("max_jobs", sa.Integer(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.CheckConstraint(_STATUSES, name="ck_runners_status"),
        sa.PrimaryKeyConstraint("id", name="pk_runners"),
        sa.UniqueConstraint("cert_serial", name="uq_runners_cert_serial"),
    )
    op.create_index("ix_runners_status_zone", "runners", ["status", "zone"])
    op.create_table(
        "enrollment_tokens",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("zone", sa.String(100), nullable=False),
        sa.Column("capabilities", _JSON, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("used_at", _TS, nullable=True),
        sa.Column("used_by_runner", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_enrollment_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_enrollment_tokens_token_hash"),
    )
    op.create_table(
        "runner_jobs",
        sa.Column("job_id", sa.String(200), nullable=False),
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.Column("step", sa.String(200), nullable=False),
        sa.Column("action", sa.String(200), nullable=False),
        sa.Column("capability", sa.String(32), nullable=False),
        sa.Column("zone", sa.String(100), nullable=True),
        sa.Column("folder", sa.String(200), nullable=False),
        sa.Column("payload", _JSON, nullable=False),
        sa.Column("task_token", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("runner_id", sa.String(64), nullable=True),
        sa.Column("fence", sa.Integer(), nullable=False),
        sa.Column("lease_expires_at", _TS, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("result", _JSON, nullable=True),
        sa.Column("error", _JSON, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.CheckConstraint(_STATES, name="ck_runner_jobs_state"),
        sa.ForeignKeyConstraint(
            ["runner_id"], ["runners.id"], name="fk_runner_jobs_runner_id_runners"
        ),
        sa.PrimaryKeyConstraint("job_id", name="pk_runner_jobs"),
    )
    op.create_index("ix_runner_jobs_state_created_at", "runner_jobs", ["state", "created_at"])
    op.create_index("ix_runner_jobs_runner_id_state", "runner_jobs", ["runner_id", "state"])
    op.create_index("ix_runner_jobs_run_id", "runner_jobs", ["run_id"])


def downgrade() -> None:
    """Drop the runner tables."""
    op.drop_table("runner_jobs")
    op.drop_table("enrollment_tokens")
    op.drop_table("runners")
