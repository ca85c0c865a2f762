"""Fewer search index entries per resource: ``_id`` and ``_lastUpdated`` from the resource row,
one index less on ``idx_reference``

Every resource had an ``idx_token`` row for ``_id`` and an ``idx_date`` row for
``_lastUpdated``, copies of its own ``res_id`` and ``last_updated`` (FHIR R4 search.html#_id,
#_lastUpdated); searches now read those columns (``search.registry.ROW_PARAMS``), so the rows
go. ``ix_idx_reference_res_type_param_target_type_target_id`` served no query: every search,
include, ``_has`` and consent check names either the owner (``ix_idx_reference_owner``) or the
target id (``ix_idx_reference_target_id_param_res_type``); PostgreSQL counted no scan of it
over the benchmark's scenarios. Each dropped B-tree entry is work saved on every write,
the audit trail's included (about 20 index rows per request).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 20:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

DROPPED_INDEX = "ix_idx_reference_res_type_param_target_type_target_id"


def upgrade() -> None:
    op.drop_index(DROPPED_INDEX, table_name="idx_reference")
    op.execute("DELETE FROM idx_token WHERE param = '_id'")
    op.execute("DELETE FROM idx_date WHERE param = '_lastUpdated'")


def downgrade() -> None:
    """The index comes back; the deleted rows do not (the older code would miss them in
    ``_id`` and ``_lastUpdated`` searches until each resource is written again)."""
    op.create_index(DROPPED_INDEX, "idx_reference", ["res_type", "param", "target_type", "target_id"])
