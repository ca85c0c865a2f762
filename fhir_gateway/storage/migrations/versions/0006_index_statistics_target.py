"""Larger samples for the search index tables' extended statistics (PostgreSQL)

Revision 0002 gave the planner multivariate MCV statistics on (type, parameter, code) and
(type, parameter, target type). At the default statistics target (100) the MCV list keeps
only the most frequent combinations of a 30,000-row sample, and with the audit trail's
AuditEvents outnumbering every other type the clinical combinations fall out of it.
Measured on 360,000 AuditEvents beside 10,000 Tasks: "Task status in (requested,
accepted)" estimated at 1 row for 5,000 real ones; the planner drove the search from the
status index and a partner's Task search fell from 700 to 85 per second (54 ms each).
A target of 1,000 (a 300,000-row sample, up to 1,000 combinations) brings every
(type, parameter, code) of that data back into the list (PostgreSQL documentation,
ALTER STATISTICS, "Extended Statistics"). ANALYZE of those two tables samples ten times
as many rows. SQLite: nothing to do.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 11:20:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TARGET = 1000
STATISTICS = ("st_idx_token", "st_idx_reference")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in STATISTICS:
        op.execute(f"ALTER STATISTICS {name} SET STATISTICS {TARGET}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in STATISTICS:
        op.execute(f"ALTER STATISTICS {name} SET STATISTICS -1")
