"""The planner's estimates for clinical search conditions survive a large audit trail
(migration 0006: extended statistics sampled at target 1,000; PostgreSQL only).

AuditEvents soon outnumber every other type in the shared index tables. With the default
sample, "Task status in (requested, accepted)" was estimated at 1 row for 5,000 real ones,
and the planner drove a patient's Task search from the status index (700 -> 85 searches/s).
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from fhir_gateway.storage.database import Database

AUDIT_EVENTS = 120_000
TASKS = 800  # 200 per status: 0.08 % of the rows, as 10,000 Tasks beside a million AuditEvents


def _estimated_rows(database: Database, sql: str) -> float:
    with database.transaction() as conn:
        plan = conn.execute(text(f"EXPLAIN (FORMAT JSON) {sql}")).scalar_one()
    found = plan if isinstance(plan, list) else json.loads(plan)
    return float(found[0]["Plan"]["Plan Rows"])


def test_task_status_estimate_with_ten_audit_tokens_per_task(database: Database) -> None:
    if database.dialect != "postgresql":
        pytest.skip("extended statistics are PostgreSQL's")
    with database.transaction(write=True) as conn:
        # an audit trail's token rows: a few codes repeated
        conn.execute(
            text(
                "INSERT INTO idx_token (res_type, res_id, param, system, code) "
                "SELECT 'AuditEvent', 'a' || g, p.param, NULL, p.code || (g % p.spread) "
                "FROM generate_series(1, :events) AS g, (VALUES ('subtype', 'read', 3), "
                "('action', 'R', 2), ('outcome', '0', 2), ('entity-role', '', 4), ('entity-type', '', 3), "
                "('type', 'rest', 1), ('site', 'fhir-gateway', 1)) AS p(param, code, spread)"
            ),
            {"events": AUDIT_EVENTS},
        )
        conn.execute(
            text(
                "INSERT INTO idx_token (res_type, res_id, param, system, code) "
                "SELECT 'Task', 't' || g, 'status', NULL, "
                "(ARRAY['requested', 'accepted', 'in-progress', 'completed'])[g % 4 + 1] "
                "FROM generate_series(1, :tasks) AS g"
            ),
            {"tasks": TASKS},
        )
    with database.transaction() as conn:
        conn.execute(text("ANALYZE idx_token"))
    estimate = _estimated_rows(
        database,
        "SELECT 1 FROM idx_token WHERE res_type = 'Task' AND param = 'status' "
        "AND (code = 'requested' OR code = 'accepted')",
    )
    real = TASKS / 2
    assert real / 3 <= estimate <= real * 3, estimate
