"""AuditEvents without history rows: their one version is their ``resource`` row

AuditEvents are append-only (created, never changed or deleted), so each had a
``resource_history`` row identical to its ``resource`` row: a second copy of its JSON and three
more B-tree entries for every request the audit trail records. Vread and history now read the
``resource`` row of the types in ``storage.tables.SINGLE_VERSION_TYPES``; their history rows go.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 20:50:00
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM resource_history WHERE res_type = 'AuditEvent'")


def downgrade() -> None:
    """The history rows come back from the ``resource`` rows (each AuditEvent's only version)."""
    op.execute(
        "INSERT INTO resource_history (res_type, res_id, version, last_updated, deleted, method, content, "
        "patient_id) SELECT res_type, res_id, version, last_updated, deleted, 'POST', content, patient_id "
        "FROM resource WHERE res_type = 'AuditEvent'"
    )
