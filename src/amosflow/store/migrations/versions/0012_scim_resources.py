"""The whole SCIM document of each provisioned user and group.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

An IdP writes more than the node reads (names, titles, phone numbers, the enterprise
extension); SCIM requires what it writes to read back, so the document is kept beside the
principal or group (decision 0059). Users and groups provisioned before have no row; their
document is built from their principal or group until they are next written.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Create ``scim_resources``."""
    op.create_table(
        "scim_resources",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("resource_type", sa.String(16), nullable=False),
        sa.Column("document", _JSON, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scim_resources")),
    )


def downgrade() -> None:
    """Drop ``scim_resources``."""
    op.drop_table("scim_resources")
