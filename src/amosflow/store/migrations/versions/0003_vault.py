"""The credential vault: secrets and their encrypted versions (ciphertext only).

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create ``secrets`` and ``secret_versions``."""
    op.create_table(
        "secrets",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("folder", sa.String(100), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_secrets"),
    )
    op.create_index("ix_secrets_folder_name", "secrets", ["folder", "name"])

    op.create_table(
        "secret_versions",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("kek_id", sa.String(200), nullable=False),
        sa.Column("kek_version", sa.Integer(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["name"], ["secrets.name"], name="fk_secret_versions_name_secrets"),
        sa.PrimaryKeyConstraint("name", "version", name="pk_secret_versions"),
    )
    op.create_index(
        "ix_secret_versions_kek_id_kek_version", "secret_versions", ["kek_id", "kek_version"]
    )


def downgrade() -> None:
    """Drop the vault tables."""
    op.drop_table("secret_versions")
    op.drop_table("secrets")
