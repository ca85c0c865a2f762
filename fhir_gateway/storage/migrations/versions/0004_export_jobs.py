"""bulk export jobs

FHIR Bulk Data Access IG v2 ``$export`` (issue 8): ``export_job`` holds each kick-off, its
requester, its state, the worker's lease and the manifest of its NDJSON files.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_job",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("owner_client", sa.String(length=255), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("group_id", sa.String(length=64), nullable=True),
        sa.Column("types", sa.Text(), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=True),
        sa.Column("transaction_time", sa.DateTime(), nullable=False),
        sa.Column("request_url", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.String(length=255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("attempt", sa.String(length=64), nullable=True),
        sa.Column("exported", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_export_job")),
    )
    op.create_index("ix_export_job_status", "export_job", ["status", "lease_until"])
    op.create_index("ix_export_job_expires", "export_job", ["expires_at"])


def downgrade() -> None:
    op.drop_table("export_job")
