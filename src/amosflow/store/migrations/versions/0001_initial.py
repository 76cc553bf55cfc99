"""Runs, the event outbox and webhook deliveries.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_TS = sa.DateTime(timezone=True)
_STATUSES = "'pending', 'running', 'completed', 'failed', 'cancelled', 'timed_out'"
_TRIGGERS = "'manual', 'schedule', 'webhook', 'deferred', 'rerun', 'cli'"


def upgrade() -> None:
    """Create the three tables of the first release."""
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.Column("flow_name", sa.String(200), nullable=False),
        sa.Column("flow_version", sa.String(64), nullable=False),
        sa.Column("flow_hash", sa.String(128), nullable=False),
        sa.Column("config_hash", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("trigger_ref", sa.String(500), nullable=True),
        sa.Column("inputs", _JSON, nullable=False),
        sa.Column("output", _JSON, nullable=True),
        sa.Column("error", _JSON, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("started_at", _TS, nullable=True),
        sa.Column("ended_at", _TS, nullable=True),
        sa.CheckConstraint(f"status IN ({_STATUSES})", name="ck_runs_status"),
        sa.CheckConstraint(f"trigger IN ({_TRIGGERS})", name="ck_runs_trigger"),
        sa.PrimaryKeyConstraint("run_id", name="pk_runs"),
    )
    op.create_index("ix_runs_created_at_run_id", "runs", ["created_at", "run_id"])
    op.create_index("ix_runs_flow_name_created_at", "runs", ["flow_name", "created_at"])
    op.create_index("ix_runs_status_created_at", "runs", ["status", "created_at"])

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("event", _JSON, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("published_at", _TS, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.create_index("ix_outbox_published_at_id", "outbox", ["published_at", "id"])

    op.create_table(
        "webhook_deliveries",
        sa.Column("hook", sa.String(200), nullable=False),
        sa.Column("delivery_id", sa.String(200), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("hook", "delivery_id", name="pk_webhook_deliveries"),
    )
    op.create_index("ix_webhook_deliveries_received_at", "webhook_deliveries", ["received_at"])


def downgrade() -> None:
    """Drop everything the first release created."""
    op.drop_table("webhook_deliveries")
    op.drop_table("outbox")
    op.drop_table("runs")
