"""Folders are namespaces: a secret is keyed by its folder and its name.

Revision ID: 0009
Revises: 0008
Create Date: 2025-01-09

The same secret name in two folders is two secrets, so nothing a caller of one folder does
with a name can touch or reveal another folder's (decision 0041). Existing secrets keep
their folder; their ciphertexts already bind it as associated data.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_FOLDER = sa.String(100)


def upgrade() -> None:
    """Key ``secrets`` by (folder, name) and ``secret_versions`` by (folder, name, version)."""
    with op.batch_alter_table("secret_versions") as batch:
        batch.add_column(sa.Column("folder", _FOLDER, nullable=True))
    op.execute(
        "UPDATE secret_versions SET folder ="
        " (SELECT secrets.folder FROM secrets WHERE secrets.name = secret_versions.name)"
    )
    with op.batch_alter_table("secret_versions") as batch:
        batch.drop_constraint("fk_secret_versions_name_secrets", type_="foreignkey")
        batch.drop_constraint("pk_secret_versions", type_="primary")
    with op.batch_alter_table("secrets") as batch:
        batch.drop_index("ix_secrets_folder_name")
        batch.drop_constraint("pk_secrets", type_="primary")
        batch.create_primary_key("pk_secrets", ["folder", "name"])
    with op.batch_alter_table("secret_versions") as batch:
        batch.alter_column("folder", existing_type=_FOLDER, nullable=False)
        batch.create_primary_key("pk_secret_versions", ["folder", "name", "version"])
        batch.create_foreign_key(
            "fk_secret_versions_folder_secrets", "secrets", ["folder", "name"], ["folder", "name"]
        )


def downgrade() -> None:
    """Key secrets by name again (refused by the database if two folders share a name)."""
    with op.batch_alter_table("secret_versions") as batch:
        batch.drop_constraint("fk_secret_versions_folder_secrets", type_="foreignkey")
        batch.drop_constraint("pk_secret_versions", type_="primary")
    with op.batch_alter_table("secrets") as batch:
        batch.drop_constraint("pk_secrets", type_="primary")
        batch.create_primary_key("pk_secrets", ["name"])
        batch.create_index("ix_secrets_folder_name", ["folder", "name"])
    with op.batch_alter_table("secret_versions") as batch:
        batch.create_primary_key("pk_secret_versions", ["name", "version"])
        batch.create_foreign_key("fk_secret_versions_name_secrets", "secrets", ["name"], ["name"])
        batch.drop_column("folder")
