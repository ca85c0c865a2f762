"""PostgreSQL extended statistics on the search index tables

The index tables hold every resource type's rows, and the audit trail's AuditEvents soon
outnumber everything else by far. Per-column statistics then estimate "Task status =
requested" at a couple of rows when there are thousands, and the planner scans the whole
token set instead of probing the few candidate resources. Multivariate MCV statistics on
(type, parameter[, code or target type]) give it the real frequencies (PostgreSQL
documentation, "Extended Statistics"). SQLite: nothing to do.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 00:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATISTICS = {
    "st_idx_token": ("idx_token", "res_type, param, code"),
    "st_idx_reference": ("idx_reference", "res_type, param, target_type"),
    "st_idx_string": ("idx_string", "res_type, param"),
    "st_idx_date": ("idx_date", "res_type, param"),
    "st_idx_number": ("idx_number", "res_type, param"),
    "st_idx_quantity": ("idx_quantity", "res_type, param"),
    "st_idx_uri": ("idx_uri", "res_type, param"),
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, (table, columns) in STATISTICS.items():
        op.execute(f"CREATE STATISTICS IF NOT EXISTS {name} (mcv, dependencies) ON {columns} FROM {table}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in STATISTICS:
        op.execute(f"DROP STATISTICS IF EXISTS {name}")
