"""server secrets: the HMAC key of paging cursors

Issue 11: paging links carry an HMAC-signed cursor bound to the client (``kit.cursor``).
Every replica must verify the cursors of the others, so the key lives in the database,
generated here once per deployment (``auth.paging_key`` creates it if the row is missing).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 10:00:00
"""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "server_secret",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_server_secret")),
    )
    op.bulk_insert(
        table,
        [
            {
                "name": "paging-cursor",
                "secret": base64.b64encode(os.urandom(32)).decode(),
                "created": datetime.now(UTC).replace(tzinfo=None),
            }
        ],
    )


def downgrade() -> None:
    op.drop_table("server_secret")
