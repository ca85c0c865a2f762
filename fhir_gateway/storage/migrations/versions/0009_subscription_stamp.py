"""subscription_stamp: a value replaced at every change of the subscriptions

Every write queued its notifications after asking the database for the active subscriptions
of the types it stored: a round trip per write, about a third of a create's CPU in the
gateway. The stamp (``storage.outbox_tables.subscription_stamp``) is now read in the write's
first statement, with its client's check, and the active subscriptions are asked for again
only when it changed (``subscriptions.active``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 23:30:00
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    stamp = op.create_table(
        "subscription_stamp",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("stamp", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_stamp")),
    )
    op.bulk_insert(stamp, [{"id": 1, "stamp": secrets.token_hex(16)}])


def downgrade() -> None:
    op.drop_table("subscription_stamp")
