"""audit_terms: the token values of the gateway's own AuditEvents, one row per event

Every request's AuditEvent took about eleven ``idx_token`` rows (action, outcome, type,
subtype, entity types and roles, site, tags), each with two B-tree entries: more than half of
what storing the event cost PostgreSQL. The events written from now on keep those values in one
``audit_terms`` row (``search.audit_terms``); the events already stored keep their rows, and a
search reads both, so nothing needs moving.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 07:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_terms",
        sa.Column("res_id", sa.String(length=64), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("res_id", name=op.f("pk_audit_terms")),
    )


def downgrade() -> None:
    """Give the events of ``audit_terms`` their ``idx_token`` rows again, then drop the table."""
    import json

    from fhir_gateway.audit.index_rows import audit_index_rows
    from fhir_gateway.search.indexing import extract_index_rows

    conn = op.get_bind()
    names = ("res_type", "res_id", "param", "system", "code", "display")
    idx_token = sa.table("idx_token", *(sa.column(name) for name in names))
    after = ""
    while True:
        chunk = conn.execute(
            sa.text(
                "SELECT r.res_id, r.content FROM resource r JOIN audit_terms a ON a.res_id = r.res_id"
                " WHERE r.res_type = 'AuditEvent' AND r.res_id > :after ORDER BY r.res_id LIMIT 1000"
            ),
            {"after": after},
        ).all()
        if not chunk:
            break
        rows = []
        for res_id, content in chunk:
            event = json.loads(content)
            index = audit_index_rows(event) or extract_index_rows(event)
            rows += [{"res_type": "AuditEvent", "res_id": res_id, **row} for row in index.get("token", [])]
        if rows:
            conn.execute(sa.insert(idx_token), rows)
        after = chunk[-1][0]
    op.drop_table("audit_terms")
