"""A person's resources of one type in id order: ``ix_resource_type_patient`` on
(res_type, patient_id, res_id)

A search of one person's rows with other criteria (``Task?patient=Patient/x&status=...``)
reads the person's rows first and tests the other criteria on each (``search.shape``,
``WhereShape.per_row``). With the id as the index's last column those rows come in the order
of the page (``ORDER BY res_id``), so the page ends after its last match instead of after the
person's last row. With the two-column index the benchmark's search (trusted client, about 30
Tasks per person) cost PostgreSQL 0.72-0.73 ms per search, its audit event included; with this
one 0.14-0.17 ms (``bench/inprocess.py``).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 13:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

INDEX = "ix_resource_type_patient"


def upgrade() -> None:
    op.drop_index(INDEX, table_name="resource")
    op.create_index(INDEX, "resource", ["res_type", "patient_id", "res_id"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="resource")
    op.create_index(INDEX, "resource", ["res_type", "patient_id"])
