"""resource.tokens: a resource's token values on its own row, for searches of one person

A search of one person's rows tests its token criteria (``Task?patient=…&status=…``) on each of
those rows; through ``idx_token`` each test was an index probe, more than a third of such a
search's time on PostgreSQL. The resource row now keeps its token values as terms
(``search.row_tokens``), written with its index rows, and the search tests them in the row. A
row without them (NULL) is tested through ``idx_token`` as before: the upgrade fills the column
of the resources already stored from their ``idx_token`` rows, 1,000 resources per statement
group (on a store of millions of resources, minutes: plan it with the upgrade's downtime).
AuditEvents keep their tokens in ``audit_terms`` and get none.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-28 17:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_CHUNK = 1000


def upgrade() -> None:
    with op.batch_alter_table("resource") as batch_op:
        batch_op.add_column(sa.Column("tokens", sa.Text(), nullable=True))
    conn = op.get_bind()
    after = ("", "")
    while True:
        keys = conn.execute(
            sa.text(
                "SELECT res_type, res_id FROM resource WHERE res_type <> 'AuditEvent' AND deleted = :no"
                " AND (res_type > :t OR (res_type = :t AND res_id > :i)) ORDER BY res_type, res_id LIMIT :n"
            ),
            {"no": False, "t": after[0], "i": after[1], "n": _CHUNK},
        ).all()
        if not keys:
            return
        _fill(conn, [(str(t), str(i)) for t, i in keys])
        after = (str(keys[-1][0]), str(keys[-1][1]))


def _fill(conn: sa.Connection, keys: list[tuple[str, str]]) -> None:
    """Set the ``tokens`` of the resources ``keys`` (one type at a time) from their index rows."""
    from fhir_gateway.search.row_tokens import tokens_of

    by_type: dict[str, list[str]] = {}
    for res_type, res_id in keys:
        by_type.setdefault(res_type, []).append(res_id)
    for res_type, ids in by_type.items():
        rows: dict[str, list[dict[str, object]]] = {res_id: [] for res_id in ids}
        found = conn.execute(
            sa.text(
                "SELECT res_id, param, system, code FROM idx_token WHERE res_type = :t AND res_id IN :ids"
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {"t": res_type, "ids": ids},
        )
        for res_id, param, system, code in found:
            rows[res_id].append({"param": param, "system": system, "code": code})
        values = [{"t": res_type, "i": i, "tokens": tokens_of({"token": r})} for i, r in rows.items()]
        conn.execute(
            sa.text("UPDATE resource SET tokens = :tokens WHERE res_type = :t AND res_id = :i"), values
        )


def downgrade() -> None:
    with op.batch_alter_table("resource") as batch_op:
        batch_op.drop_column("tokens")
