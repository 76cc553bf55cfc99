"""The hash-chained audit trail and its signed checkpoints.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create ``audit_records`` and ``audit_checkpoints``."""
    op.create_table(
        "audit_records",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("resource", sa.String(500), nullable=False),
        sa.Column("folder", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("details", _JSON, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.CheckConstraint("outcome IN ('ok', 'denied', 'error')", name="ck_audit_records_outcome"),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_records"),
    )
    op.create_index("ix_audit_records_at", "audit_records", ["at"])
    op.create_index("ix_audit_records_actor_seq", "audit_records", ["actor", "seq"])
    op.create_index("ix_audit_records_action_seq", "audit_records", ["action", "seq"])
    op.create_index("ix_audit_records_resource_seq", "audit_records", ["resource", "seq"])
    op.create_index("ix_audit_records_folder_seq", "audit_records", ["folder", "seq"])

    op.create_table(
        "audit_checkpoints",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_checkpoints"),
    )


def downgrade() -> None:
    """Drop the audit tables."""
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_records")
