"""The SQL filter on search pages, counts, history, system searches and AuditEvents."""

from __future__ import annotations

import pytest
from sqlalchemy import ColumnElement, Table, func, select

from fhir_gateway.consent.visibility import visible_clause
from fhir_gateway.storage import repository
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.tables import resource, resource_history
from tests.consent.support import caller, careteam, consent, count_visible, provision, store, visible

SAAD, OTHER = "Organization/saad", "Organization/other"


def test_partner_sees_exactly_25_of_100_tasks_paged_by_10(consent_db: Database) -> None:
    with consent_db.transaction(write=True) as conn:
        for p in range(20):
            store(conn, "Patient", f"p{p}", {"resourceType": "Patient"})
            for t in range(5):
                store(
                    conn, "Task", f"t{p}-{t}", {"resourceType": "Task", "for": {"reference": f"Patient/p{p}"}}
                )
        for p in range(5):  # 5 persons permit SAAD: 25 tasks
            store(conn, "Consent", f"c{p}", consent(f"p{p}", provision("permit", actors=[SAAD])))
        for p in range(5, 10):  # 5 persons' care team has SAAD, but they refused it
            store(conn, "CareTeam", f"ct{p}", careteam(f"p{p}", [(SAAD, None, None)]))
            store(conn, "Consent", f"d{p}", consent(f"p{p}", provision("deny", actors=[SAAD])))
    access = caller(SAAD)
    with consent_db.transaction() as conn:
        assert count_visible(conn, access, "Task", "care-team-opt-out") == 25
        clause = visible_clause(access, resource, "Task", policy="care-team-opt-out")
        seen: list[str] = []
        for offset in range(0, 40, 10):
            page = select(resource.c.res_id).where(resource.c.res_type == "Task", clause)
            rows = conn.execute(page.order_by(resource.c.res_id).limit(10).offset(offset)).scalars().all()
            seen.extend(rows)
        assert len(seen) == 25
        assert {s.split("-")[0] for s in seen} == {f"t{p}" for p in range(5)}
        assert count_visible(conn, caller(OTHER), "Task", "care-team-opt-out") == 0


def test_vread_of_an_old_version_is_checked_as_stored(consent_db: Database) -> None:
    with consent_db.transaction(write=True) as conn:
        store(conn, "Task", "t1", {"resourceType": "Task", "for": {"reference": "Patient/p1"}})
        store(conn, "Task", "t1", {"resourceType": "Task", "for": {"reference": "Patient/p2"}})
        store(conn, "Consent", "c1", consent("p2", provision("permit", actors=[SAAD])))

    def saad_sees(table: Table, res_type: str | None = "Task") -> ColumnElement[bool]:
        return visible_clause(caller(SAAD), table, res_type, policy="opt-in")

    with consent_db.transaction() as conn:  # version 1 (about p1) is history, version 2 current
        readable = [repository.get_version(conn, "Task", "t1", n, visible=saad_sees) for n in (1, 2)]
        assert [row.version if row else None for row in readable] == [None, 2]
        mixed = sum(
            conn.execute(select(func.count()).select_from(t).where(saad_sees(t, None))).scalar_one()
            for t in (resource_history, resource)
        )
        assert mixed == 2  # Task v2 and the Consent itself


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        (caller(SAAD), set()),
        (caller(SAAD, scope="AuditEvent"), {"AuditEvent/a1", "AuditEvent/a2"}),
        (caller(patient="p1"), {"AuditEvent/a1"}),
        (caller(trusted=True), {"AuditEvent/a1", "AuditEvent/a2"}),
        (caller(SAAD, break_glass="urgence"), set()),
    ],
    ids=["partner", "auditor", "person", "trusted", "break-glass"],
)
def test_audit_events_visible_to_auditors_and_the_person(
    consent_db: Database, who: object, expected: set[str]
) -> None:
    with consent_db.transaction(write=True) as conn:
        store(conn, "Consent", "c1", consent("p1", provision("permit", actors=[SAAD])))
        store(
            conn, "AuditEvent", "a1", {"resourceType": "AuditEvent", "patient": {"reference": "Patient/p1"}}
        )
        store(conn, "AuditEvent", "a2", {"resourceType": "AuditEvent"})
    with consent_db.transaction() as conn:
        assert visible(conn, who, "AuditEvent", "opt-in") == expected  # type: ignore[arg-type]
        assert {r for r in visible(conn, who, None, "opt-in") if r.startswith("AuditEvent/")} == expected  # type: ignore[arg-type]
