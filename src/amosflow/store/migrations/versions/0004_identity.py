"""Identity and folders: principals, groups, role bindings, API tokens, folders of resources.

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-04
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_KINDS = "kind IN ('user', 'service')"
_SOURCES = "source IN ('local', 'scim', 'oidc')"
_SUBJECTS = "subject_kind IN ('principal', 'group')"
_ROLES = "role IN ('analyst', 'operator', 'administrator', 'approver', 'auditor', 'service')"


def upgrade() -> None:
    """Create the identity tables, the folders, and the folder of every run."""
    op.create_table(
        "folders",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_folders"),
    )
    op.create_table(
        "catalog_folders",
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("folder", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("kind", "name", name="pk_catalog_folders"),
    )
    op.create_index("ix_catalog_folders_folder_kind", "catalog_folders", ["folder", "kind"])
    op.create_table(
        "principals",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("username", sa.String(200), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=True),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", _TS, nullable=True),
        sa.Column("tokens_valid_after", _TS, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.CheckConstraint(_KINDS, name="ck_principals_kind"),
        sa.CheckConstraint(_SOURCES, name="ck_principals_source"),
        sa.PrimaryKeyConstraint("id", name="pk_principals"),
        sa.UniqueConstraint("username", name="uq_principals_username"),
    )
    op.create_index("ix_principals_source_external_id", "principals", ["source", "external_id"])
    op.create_table(
        "groups",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_groups"),
        sa.UniqueConstraint("display_name", name="uq_groups_display_name"),
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.String(64), nullable=False),
        sa.Column("principal_id", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name="fk_group_members_group_id_groups", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["principals.id"],
            name="fk_group_members_principal_id_principals",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "principal_id", name="pk_group_members"),
    )
    op.create_table(
        "role_bindings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject_kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("folder", sa.String(200), nullable=False),
        sa.Column("condition", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.CheckConstraint(_SUBJECTS, name="ck_role_bindings_subject_kind"),
        sa.CheckConstraint(_ROLES, name="ck_role_bindings_role"),
        sa.PrimaryKeyConstraint("id", name="pk_role_bindings"),
    )
    op.create_index(
        "ix_role_bindings_subject_kind_subject", "role_bindings", ["subject_kind", "subject"]
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("principal_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")),
        sa.Column("expires_at", _TS, nullable=True),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.Column("last_used_at", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["principals.id"],
            name="fk_api_tokens_principal_id_principals",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_index("ix_api_tokens_principal_id", "api_tokens", ["principal_id"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(
            sa.Column("folder", sa.String(200), nullable=False, server_default="default")
        )
        batch.add_column(sa.Column("started_by", sa.String(200), nullable=True))
    op.create_index("ix_runs_folder_created_at", "runs", ["folder", "created_at"])
    folders = sa.table(
        "folders",
        sa.column("name", sa.String),
        sa.column("description", sa.String),
        sa.column("created_at", _TS),
    )
    op.bulk_insert(
        folders,
        [
            {
                "name": "default",
                "description": "Where everything lives until it is filed elsewhere.",
                "created_at": datetime.now(UTC),
            }
        ],
    )


def downgrade() -> None:
    """Drop the identity tables and the folder of runs."""
    op.drop_index("ix_runs_folder_created_at", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("started_by")
        batch.drop_column("folder")
    for table in (
        "api_tokens",
        "role_bindings",
        "group_members",
        "groups",
        "principals",
        "catalog_folders",
        "folders",
    ):
        op.drop_table(table)
