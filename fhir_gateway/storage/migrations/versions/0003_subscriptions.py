"""subscriptions and their notification outbox

FHIR R4 subscription.html, delivered through a transactional outbox (issue 7):
``subscription`` mirrors each Subscription resource with its owner and delivery state,
``subscription_event`` holds the notifications written in the same transaction as the
changes that cause them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscription",
        sa.Column("sub_id", sa.String(length=64), nullable=False),
        sa.Column("owner_client", sa.String(length=255), nullable=False),
        sa.Column("owner_organization", sa.String(length=129), nullable=True),
        sa.Column("owner_practitioner", sa.String(length=129), nullable=True),
        sa.Column("owner_trusted", sa.Boolean(), nullable=False),
        sa.Column("owner_verify", sa.Boolean(), nullable=False),
        sa.Column("owner_scope", sa.Text(), nullable=False),
        sa.Column("owner_purpose", sa.String(length=64), nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("criteria", sa.Text(), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("payload", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("events_count", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("retry_at", sa.DateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("sub_id", name=op.f("pk_subscription")),
    )
    op.create_index("ix_subscription_type_status", "subscription", ["res_type", "status"])
    op.create_index("ix_subscription_status_retry", "subscription", ["status", "retry_at"])
    op.create_table(
        "subscription_event",
        sa.Column(
            "event_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("sub_id", sa.String(length=64), nullable=False),
        sa.Column("event_number", sa.Integer(), nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("res_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_subscription_event")),
    )
    op.create_index("ix_subscription_event_queue", "subscription_event", ["sub_id", "state", "event_number"])
    op.create_index("ix_subscription_event_state", "subscription_event", ["state", "sub_id"])


def downgrade() -> None:
    op.drop_table("subscription_event")
    op.drop_table("subscription")
