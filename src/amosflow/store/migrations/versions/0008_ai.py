"""AI layer: model usage counters.

Revision ID: 0008
Revises: 0007
Create Date: 2025-01-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_OUTCOMES = "outcome IN ('pending', 'ok', 'error')"


def upgrade() -> None:
    """Create ``ai_usage``: one row per model call, what budgets sum."""
    op.create_table(
        "ai_usage",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("model_id", sa.String(300), nullable=False),
        sa.Column("revision", sa.String(300), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.Column("step_id", sa.String(200), nullable=False),
        sa.Column("flow", sa.String(200), nullable=False),
        sa.Column("folder", sa.String(200), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("total_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.CheckConstraint(_OUTCOMES, name="ck_ai_usage_outcome"),
        sa.PrimaryKeyConstraint("id", name="pk_ai_usage"),
    )
    op.create_index("ix_ai_usage_model_run_id", "ai_usage", ["model", "run_id"])
    op.create_index("ix_ai_usage_model_folder_at", "ai_usage", ["model", "folder", "at"])


def downgrade() -> None:
    """Drop ``ai_usage``."""
    op.drop_index("ix_ai_usage_model_folder_at", table_name="ai_usage")
    op.drop_index("ix_ai_usage_model_run_id", table_name="ai_usage")
    op.drop_table("ai_usage")
