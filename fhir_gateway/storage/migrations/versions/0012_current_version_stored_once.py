"""The current version of a resource is stored once: its ``resource`` row

Every write inserted its version twice: the ``resource`` row (replaced at the next write) and a
``resource_history`` row with the same JSON, three more B-tree entries and, for the many
resources never changed after their creation (visits, alerts, plans imported from partner
files), a second copy of their content kept for ever. Now ``resource_history`` holds the earlier
versions only: a write moves the version it replaces there (``storage.version_writes``), and
vread and history read both tables (FHIR R4 http.html#vread, #history), each version being in
exactly one of them. ``resource.method`` keeps how the current version was stored (the
history entry's ``request.method``). AuditEvents, never changed, had no history rows already
(migration 0008): the rule now holds for every type.

The upgrade sets the method of the rows whose current version was not a create by POST (the
column's default: most resources, never changed, are not rewritten) and deletes one history row
per resource: on a store of millions of resources, minutes; plan it with the upgrade's downtime.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 03:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_SAME_VERSION = (
    "h.res_type = resource.res_type AND h.res_id = resource.res_id AND h.version = resource.version"
)


def upgrade() -> None:
    with op.batch_alter_table("resource") as batch_op:
        batch_op.add_column(sa.Column("method", sa.String(8), nullable=False, server_default="POST"))
    op.execute(
        f"UPDATE resource SET method = (SELECT h.method FROM resource_history h WHERE {_SAME_VERSION}) "
        f"WHERE EXISTS (SELECT 1 FROM resource_history h WHERE {_SAME_VERSION} AND h.method <> 'POST')"
    )
    op.execute(
        "DELETE FROM resource_history WHERE EXISTS (SELECT 1 FROM resource r WHERE "
        "r.res_type = resource_history.res_type AND r.res_id = resource_history.res_id "
        "AND r.version = resource_history.version)"
    )


def downgrade() -> None:
    """Every current version gets its history row back (AuditEvents excepted, as in 0008)."""
    op.execute(
        "INSERT INTO resource_history (res_type, res_id, version, last_updated, deleted, method, content, "
        "patient_id) SELECT res_type, res_id, version, last_updated, deleted, method, "
        "CASE WHEN deleted THEN NULL ELSE content END, patient_id FROM resource "
        "WHERE res_type <> 'AuditEvent'"
    )
    with op.batch_alter_table("resource") as batch_op:
        batch_op.drop_column("method")
