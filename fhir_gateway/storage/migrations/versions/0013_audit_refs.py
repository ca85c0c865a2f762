"""audit_terms.refs, recorded_low, recorded_high: AuditEvents' references and date (PostgreSQL)

Every request's AuditEvent took four or more ``idx_reference`` rows and one ``idx_date`` row
(eleven B-tree entries). On PostgreSQL they are now columns of the event's ``audit_terms`` row:
its reference keys under a GIN index, its ``recorded`` range under two B-tree indexes
(``storage.audit_refs``; docs/audit-store.md, step 2). The upgrade moves the rows of the
AuditEvents already stored, 1,000 events per statement group (on a store of millions of events,
minutes: plan it with the upgrade's downtime). SQLite gets the columns, unused: its AuditEvents
keep their generic rows.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-28 12:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_CHUNK = 1000
_MOVED_KINDS = ("reference", "date")


def upgrade() -> None:
    op.add_column("audit_terms", sa.Column("refs", sa.Text(), nullable=True))
    op.add_column("audit_terms", sa.Column("recorded_low", sa.DateTime(), nullable=True))
    op.add_column("audit_terms", sa.Column("recorded_high", sa.DateTime(), nullable=True))
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE INDEX ix_audit_terms_refs ON audit_terms USING gin (string_to_array(refs, E'\\x1f'))")
    op.create_index("ix_audit_terms_recorded_low", "audit_terms", ["recorded_low"])
    op.create_index("ix_audit_terms_recorded_high", "audit_terms", ["recorded_high"])
    _move_stored_events()


def _move_stored_events() -> None:
    """The reference and date rows of every stored AuditEvent into its ``audit_terms`` row, as
    ``storage.audit_refs.with_audit_refs`` puts a new event's."""
    from fhir_gateway.storage.audit_refs import with_audit_refs
    from fhir_gateway.storage.tables import audit_terms, idx_date, idx_reference

    conn = op.get_bind()
    after = ""
    while True:
        ids = list(
            conn.execute(
                sa.text(
                    "SELECT res_id FROM resource WHERE res_type = 'AuditEvent' AND res_id > :after"
                    " ORDER BY res_id LIMIT :n"
                ),
                {"after": after, "n": _CHUNK},
            ).scalars()
        )
        if not ids:
            return
        after = ids[-1]
        tables = (audit_terms, idx_reference, idx_date)
        parts = [
            (t, [tuple(row) for row in conn.execute(sa.select(t).where(_of_events(t, ids)))]) for t in tables
        ]
        moved = with_audit_refs(parts)
        for table in tables:
            conn.execute(sa.delete(table).where(_of_events(table, ids)))
        for table, rows in moved:
            if rows:
                names = [c.name for c in table.columns]
                conn.execute(sa.insert(table), [dict(zip(names, row, strict=True)) for row in rows])


def _of_events(table: sa.Table, ids: list[str]) -> sa.ColumnElement[bool]:
    """The rows of ``table`` that belong to the AuditEvents ``ids``."""
    owned: sa.ColumnElement[bool] = table.c.res_id.in_(ids)
    return owned if "res_type" not in table.c else sa.and_(table.c.res_type == "AuditEvent", owned)


def downgrade() -> None:
    """Give the AuditEvents their generic reference and date rows again, then drop the columns."""
    import json
    from typing import Any

    from fhir_gateway.audit.index_rows import audit_index_rows
    from fhir_gateway.search.indexing import extract_index_rows
    from fhir_gateway.storage.index_repository import IndexWrite, index_inserts

    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        after = ""
        while True:
            chunk = conn.execute(
                sa.text(
                    "SELECT r.res_id, r.content FROM resource r JOIN audit_terms a ON a.res_id = r.res_id"
                    " WHERE r.res_type = 'AuditEvent' AND (a.refs IS NOT NULL OR a.recorded_low IS NOT NULL"
                    " OR a.recorded_high IS NOT NULL) AND r.res_id > :after ORDER BY r.res_id LIMIT :n"
                ),
                {"after": after, "n": _CHUNK},
            ).all()
            if not chunk:
                break
            writes = []
            for res_id, content in chunk:
                event = json.loads(content)
                rows = audit_index_rows(event) or extract_index_rows(event)
                kept: dict[str, list[dict[str, Any]]] = {k: rows[k] for k in _MOVED_KINDS if k in rows}
                writes.append(IndexWrite("AuditEvent", res_id, kept, True))
            for table, tuples in index_inserts(writes):
                names = [c.name for c in table.columns]
                conn.execute(sa.insert(table), [dict(zip(names, row, strict=True)) for row in tuples])
            after = chunk[-1][0]
        conn.execute(sa.text("DELETE FROM audit_terms WHERE terms = '[]'"))
        op.drop_index("ix_audit_terms_recorded_high", "audit_terms")
        op.drop_index("ix_audit_terms_recorded_low", "audit_terms")
        op.drop_index("ix_audit_terms_refs", "audit_terms")
    with op.batch_alter_table("audit_terms") as batch_op:
        batch_op.drop_column("recorded_high")
        batch_op.drop_column("recorded_low")
        batch_op.drop_column("refs")
