"""Audit records wait in ``audit_pending`` until the chainer links them (group commit).

Revision ID: 0010
Revises: 0009
Create Date: 2025-01-10

Appenders on PostgreSQL insert their record here in their own transaction, without the
chain's lock, so their commits no longer queue behind each other; the chainer assigns seq
and hashes in batches and moves the rows into ``audit_records`` (decision 0054).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create ``audit_pending``."""
    op.create_table(
        "audit_pending",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("resource", sa.String(500), nullable=False),
        sa.Column("folder", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("details", _JSON, nullable=False),
        sa.CheckConstraint("outcome IN ('ok', 'denied', 'error')", name="ck_audit_pending_outcome"),
        sa.PrimaryKeyConstraint("id", name="pk_audit_pending"),
    )


def downgrade() -> None:
    """Drop ``audit_pending``; link its rows first (``amos audit`` does on any append)."""
    op.drop_table("audit_pending")
